//! The process: the request's config merged with the image's (docker's `merge`), the environment
//! (`CreateDaemonEnvironment`), the command line, and the process of an exec.

use std::path::Path;

use bollard_stubs::models::{ContainerConfig, ExecConfig};
use oci_spec::runtime::{Box as ConsoleBox, BoxBuilder, Process, Spec, User};

use super::SpecError;
use super::host::HostInfo;
use super::user::{ResolvedUser, resolve_user};

/// The PATH docker gives Linux containers.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The annotation in which the spec records `--group-add`, so that an exec with another user gets the groups too.
pub const GROUP_ADD_ANNOTATION: &str = "io.berth.group-add";

/// The request's config completed from the image's, as dockerd does at create: user, env (the image's variables
/// the request does not set), cmd and entrypoint (the image's cmd only when the request sets neither; the image's
/// entrypoint only when the request's is absent), working dir, volumes, exposed ports, labels, stop signal, health
/// check. `Entrypoint: [""]` resets the entrypoint (kept as an empty list, so that merging again is a no-op).
/// Fails with "no command specified" when nothing is left to run.
pub fn merge_config(user: &ContainerConfig, image: &ContainerConfig) -> Result<ContainerConfig, SpecError> {
    let mut c = user.clone();
    if c.user.as_deref().is_none_or(str::is_empty) {
        c.user = image.user.clone();
    }
    match (&mut c.exposed_ports, &image.exposed_ports) {
        (Some(ports), Some(img)) if !ports.is_empty() => {
            for p in img {
                if !ports.contains(p) {
                    ports.push(p.clone());
                }
            }
        }
        (ports, img) => {
            if ports.as_ref().is_none_or(Vec::is_empty) {
                ports.clone_from(img);
            }
        }
    }
    match &mut c.env {
        Some(env) if !env.is_empty() => {
            for img in image.env.iter().flatten() {
                let key = img.split('=').next().unwrap_or("");
                if !env.iter().any(|e| e.split('=').next() == Some(key)) {
                    env.push(img.clone());
                }
            }
        }
        env => env.clone_from(&image.env),
    }
    if let Some(img_labels) = &image.labels {
        let labels = c.labels.get_or_insert_with(Default::default);
        for (k, v) in img_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if c.entrypoint.as_ref().is_none_or(Vec::is_empty) {
        if c.cmd.as_ref().is_none_or(Vec::is_empty) {
            c.cmd.clone_from(&image.cmd);
        }
        if c.entrypoint.is_none() {
            c.entrypoint.clone_from(&image.entrypoint);
        }
    }
    if let (None, Some(img)) = (&c.healthcheck, &image.healthcheck) {
        c.healthcheck = Some(img.clone());
    } else if let (Some(hc), Some(img)) = (&mut c.healthcheck, &image.healthcheck) {
        if hc.test.as_ref().is_none_or(Vec::is_empty) {
            hc.test.clone_from(&img.test);
        }
        for (mine, theirs) in [
            (&mut hc.interval, img.interval),
            (&mut hc.timeout, img.timeout),
            (&mut hc.start_period, img.start_period),
            (&mut hc.start_interval, img.start_interval),
            (&mut hc.retries, img.retries),
        ] {
            if mine.is_none_or(|v| v == 0) {
                *mine = theirs;
            }
        }
    }
    if c.working_dir.as_deref().is_none_or(str::is_empty) {
        c.working_dir = image.working_dir.clone();
    }
    match (&mut c.volumes, &image.volumes) {
        (Some(vols), Some(img)) if !vols.is_empty() => {
            for v in img {
                if !vols.contains(v) {
                    vols.push(v.clone());
                }
            }
        }
        (vols, img) => {
            if vols.as_ref().is_none_or(Vec::is_empty) {
                vols.clone_from(img);
            }
        }
    }
    if c.on_build.as_ref().is_none_or(Vec::is_empty) {
        c.on_build.clone_from(&image.on_build);
    }
    if c.stop_signal.as_deref().is_none_or(str::is_empty) {
        c.stop_signal.clone_from(&image.stop_signal);
    }
    if c.shell.as_ref().is_none_or(Vec::is_empty) {
        c.shell.clone_from(&image.shell);
    }
    if c.entrypoint.as_deref() == Some(&[String::new()][..]) {
        c.entrypoint = Some(Vec::new());
    }
    if c.entrypoint.as_ref().is_none_or(Vec::is_empty) && c.cmd.as_ref().is_none_or(Vec::is_empty) {
        return Err(SpecError::NoCommand);
    }
    Ok(c)
}

/// The command line: entrypoint then cmd.
pub fn command_line(merged: &ContainerConfig) -> Result<Vec<String>, SpecError> {
    let args: Vec<String> = merged
        .entrypoint
        .iter()
        .flatten()
        .chain(merged.cmd.iter().flatten())
        .cloned()
        .collect();
    if args.is_empty() {
        Err(SpecError::NoCommand)
    } else {
        Ok(args)
    }
}

/// docker's `ReplaceOrAppendEnvValues`: `overrides` replace the defaults with the same name or are appended; an
/// entry without `=` removes the variable.
pub fn replace_or_append_env(defaults: Vec<String>, overrides: &[String]) -> Vec<String> {
    let mut env: Vec<Option<String>> = defaults.into_iter().map(Some).collect();
    let name_of = |e: &str| e.split_once('=').map_or(e, |(n, _)| n).to_string();
    for value in overrides {
        match value.split_once('=') {
            None => {
                for slot in env.iter_mut() {
                    if slot.as_deref().is_some_and(|e| name_of(e) == *value) {
                        *slot = None;
                    }
                }
            }
            Some((name, _)) => {
                match env
                    .iter_mut()
                    .find(|s| s.as_deref().is_some_and(|e| name_of(e) == name))
                {
                    Some(slot) => *slot = Some(value.clone()),
                    None => env.push(Some(value.clone())),
                }
            }
        }
    }
    env.into_iter().flatten().collect()
}

/// The container's environment: PATH, HOSTNAME, TERM=xterm with a tty, then the config's variables over them.
pub fn container_env(hostname: &str, tty: bool, config_env: &[String]) -> Vec<String> {
    let mut defaults = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}")];
    if tty {
        defaults.push("TERM=xterm".to_string());
    }
    replace_or_append_env(defaults, config_env)
}

/// The spec's user from a resolved one.
pub fn oci_user(user: &ResolvedUser) -> User {
    let mut u = User::default();
    u.set_uid(user.uid);
    u.set_gid(user.gid);
    u.set_additional_gids(Some(user.additional_gids.clone()));
    u.set_umask(None);
    u
}

/// The console size of a tty process from `[height, width]`.
pub fn console_size(size: Option<&Vec<usize>>) -> Option<ConsoleBox> {
    match size.map(Vec::as_slice) {
        Some([h, w]) if *h > 0 && *w > 0 => BoxBuilder::default()
            .height(u64::try_from(*h).ok()?)
            .width(u64::try_from(*w).ok()?)
            .build()
            .ok(),
        _ => None,
    }
}

/// The process of an exec, from the container's spec: the spec's process (capabilities, rlimits,
/// no_new_privs, oom score, user) with the exec's command, environment (the container's, with `TERM=xterm` only
/// for a tty exec, and the exec's variables over them), working directory (the container's by default), tty, and
/// user (resolved in `rootfs`, with the container's `--group-add`; the runtime adds the user's HOME when the
/// environment has none); `Privileged` gives every capability the daemon holds. Seccomp and the rest of the container's confinement are the runtime's, from the spec.
pub fn exec_process(spec: &Spec, exec: &ExecConfig, rootfs: &Path) -> Result<Process, SpecError> {
    exec_process_on(spec, exec, rootfs, super::host::host_info())
}

pub(crate) fn exec_process_on(
    spec: &Spec,
    exec: &ExecConfig,
    rootfs: &Path,
    info: &HostInfo,
) -> Result<Process, SpecError> {
    let args = exec
        .cmd
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or(SpecError::NoExecCommand)?;
    let mut process = spec.process().clone().unwrap_or_default();
    let tty = exec.tty == Some(true);
    let container_tty = process.terminal() == Some(true);
    let mut env = process.env().clone().unwrap_or_default();
    if container_tty && !tty {
        // The container's TERM=xterm came with its tty; an exec without one does not get it.
        if let Some(pos) = env.iter().position(|e| e == "TERM=xterm") {
            env.remove(pos);
        }
    } else if tty && !container_tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    let env = replace_or_append_env(env, exec.env.as_deref().unwrap_or_default());
    if let Some(user_spec) = exec.user.as_deref().filter(|u| !u.is_empty()) {
        let group_add: Vec<String> = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(GROUP_ADD_ANNOTATION))
            .map(|g| serde_json::from_str(g).unwrap_or_default())
            .unwrap_or_default();
        let user = resolve_user(rootfs, user_spec, &group_add)?;
        process.set_user(oci_user(&user));
    }
    if let Some(wd) = exec.working_dir.as_deref().filter(|w| !w.is_empty()) {
        if !wd.starts_with('/') {
            return Err(SpecError::WorkingDir(wd.to_string()));
        }
        process.set_cwd(wd.into());
    }
    if exec.privileged == Some(true) {
        let all: Vec<String> = info.caps.iter().map(|c| c.to_string()).collect();
        process.set_capabilities(Some(super::caps::linux_capabilities(&all)));
    }
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_terminal(Some(tty));
    process.set_console_size(if tty {
        console_size(exec.console_size.as_ref())
    } else {
        None
    });
    Ok(process)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::HealthConfig;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn image() -> ContainerConfig {
        ContainerConfig {
            env: Some(s(&["PATH=/img/bin", "LANG=C", "IMG=1"])),
            cmd: Some(s(&["/bin/sh"])),
            entrypoint: Some(s(&["/entry.sh"])),
            working_dir: Some("/app".into()),
            user: Some("app".into()),
            volumes: Some(s(&["/data"])),
            healthcheck: Some(HealthConfig {
                test: Some(s(&["CMD", "true"])),
                interval: Some(5),
                ..Default::default()
            }),
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        }
    }

    #[test]
    fn merge_takes_image_defaults() {
        let m = merge_config(&ContainerConfig::default(), &image()).unwrap();
        assert_eq!(
            m.env.as_deref(),
            Some(&s(&["PATH=/img/bin", "LANG=C", "IMG=1"])[..])
        );
        assert_eq!(command_line(&m).unwrap(), ["/entry.sh", "/bin/sh"]);
        assert_eq!(m.working_dir.as_deref(), Some("/app"));
        assert_eq!(m.user.as_deref(), Some("app"));
        assert_eq!(m.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(m.healthcheck.as_ref().unwrap().interval, Some(5));
    }

    #[test]
    fn merge_keeps_request_values() {
        let req = ContainerConfig {
            env: Some(s(&["LANG=fr", "MINE=2"])),
            cmd: Some(s(&["echo", "hi"])),
            user: Some("0".into()),
            working_dir: Some("/w".into()),
            ..Default::default()
        };
        let m = merge_config(&req, &image()).unwrap();
        assert_eq!(
            m.env.as_deref(),
            Some(&s(&["LANG=fr", "MINE=2", "PATH=/img/bin", "IMG=1"])[..])
        );
        assert_eq!(
            command_line(&m).unwrap(),
            ["/entry.sh", "echo", "hi"],
            "cmd replaces the image's, entrypoint stays"
        );
        assert_eq!(
            (m.user.as_deref(), m.working_dir.as_deref()),
            (Some("0"), Some("/w"))
        );
    }

    #[test]
    fn entrypoint_rules() {
        // A new entrypoint drops the image's cmd.
        let req = ContainerConfig {
            entrypoint: Some(s(&["/bin/env"])),
            ..Default::default()
        };
        let m = merge_config(&req, &image()).unwrap();
        assert_eq!(command_line(&m).unwrap(), ["/bin/env"]);
        // [""] resets the entrypoint and, as any new entrypoint, drops the image's cmd; merging again changes
        // nothing.
        let req = ContainerConfig {
            entrypoint: Some(s(&[""])),
            cmd: Some(s(&["echo", "hi"])),
            ..Default::default()
        };
        let m = merge_config(&req, &image()).unwrap();
        assert_eq!(command_line(&m).unwrap(), ["echo", "hi"]);
        let again = merge_config(&m, &image()).unwrap();
        assert_eq!(again, m);
        let req = ContainerConfig {
            entrypoint: Some(s(&[""])),
            ..Default::default()
        };
        assert_eq!(
            merge_config(&req, &image()).unwrap_err().to_string(),
            "no command specified"
        );
        // Nothing to run.
        let bare = ContainerConfig {
            entrypoint: Some(s(&[""])),
            ..Default::default()
        };
        assert_eq!(
            merge_config(&bare, &ContainerConfig::default())
                .unwrap_err()
                .to_string(),
            "no command specified"
        );
        assert!(merge_config(&ContainerConfig::default(), &ContainerConfig::default()).is_err());
    }

    #[test]
    fn environment() {
        let env = container_env("abc123", true, &s(&["PATH=/custom", "X=1", "HOSTNAME"]));
        assert_eq!(env, s(&["PATH=/custom", "TERM=xterm", "X=1"]));
        let env = container_env("abc123", false, &[]);
        assert_eq!(env, s(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=abc123"]));
        assert_eq!(
            replace_or_append_env(s(&["A=1", "B=2"]), &s(&["A", "B=3", "C="])),
            s(&["B=3", "C="])
        );
    }

    fn container_spec(tty: bool) -> Spec {
        let mut spec = Spec::default();
        let mut p = Process::default();
        p.set_terminal(Some(tty));
        p.set_args(Some(s(&["/bin/sh"])));
        p.set_env(Some(container_env("h", tty, &s(&["A=1", "HOME=/root"]))));
        p.set_cwd("/work".into());
        p.set_capabilities(Some(super::super::caps::linux_capabilities(&s(&["CAP_CHOWN"]))));
        spec.set_process(Some(p));
        spec.set_annotations(Some(
            [(GROUP_ADD_ANNOTATION.to_string(), "[\"staff\"]".to_string())].into(),
        ));
        spec
    }

    #[test]
    fn exec_inherits_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nu:x:7:7::/home/u:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let info = HostInfo::for_tests();
        let exec = ExecConfig {
            cmd: Some(s(&["ls", "-l"])),
            env: Some(s(&["B=2", "A"])),
            ..Default::default()
        };
        let p = exec_process_on(&container_spec(true), &exec, dir.path(), &info).unwrap();
        assert_eq!(p.args().as_deref(), Some(&s(&["ls", "-l"])[..]));
        assert_eq!(
            p.env().as_deref(),
            Some(&s(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h", "HOME=/root", "B=2"])[..])
        );
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(p.cwd(), Path::new("/work"));
        assert_eq!(
            super::super::caps::names_of(p.capabilities().as_ref().unwrap().bounding().as_ref().unwrap()),
            ["CAP_CHOWN"]
        );

        let exec = ExecConfig {
            cmd: Some(s(&["id"])),
            tty: Some(true),
            user: Some("u".into()),
            working_dir: Some("/tmp".into()),
            privileged: Some(true),
            console_size: Some(vec![24, 80]),
            ..Default::default()
        };
        let p = exec_process_on(&container_spec(false), &exec, dir.path(), &info).unwrap();
        let env = p.env().clone().unwrap();
        assert!(env.contains(&"TERM=xterm".to_string()), "{env:?}");
        assert!(
            env.contains(&"HOME=/root".to_string()),
            "the container's configured HOME stays: {env:?}"
        );
        assert_eq!(
            (p.user().uid(), p.user().gid(), p.user().additional_gids().clone()),
            (7, 7, Some(vec![7, 50]))
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.console_size().map(|b| (b.height(), b.width())), Some((24, 80)));
        assert_eq!(
            p.capabilities()
                .as_ref()
                .unwrap()
                .bounding()
                .as_ref()
                .unwrap()
                .len(),
            info.caps.len()
        );

        let err =
            exec_process_on(&container_spec(false), &ExecConfig::default(), dir.path(), &info).unwrap_err();
        assert_eq!(err.to_string(), "No exec command specified");
        let bad_user = ExecConfig {
            cmd: Some(s(&["id"])),
            user: Some("ghost".into()),
            ..Default::default()
        };
        assert!(matches!(
            exec_process_on(&container_spec(false), &bad_user, dir.path(), &info),
            Err(SpecError::UserNotFound(_))
        ));
    }
}
