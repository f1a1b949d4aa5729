#!/usr/bin/env bash
# make-image.sh OUT_DIR NAME: builds a one-layer busybox image from the host's static busybox, by hand, in the
# forms the peers import:
#   OUT_DIR/rootfs.tar   the root filesystem (podman import, docker import)
#   OUT_DIR/oci.tar      an OCI image layout archive tagged NAME (ctr image import)
# Needs only bash, tar, gzip-free sha256sum and /bin/busybox (busybox-static). Deterministic for one busybox.
set -euo pipefail

out=$1
name=$2
busybox=/bin/busybox
[[ -x $busybox ]] || {
    echo "make-image.sh: $busybox is missing (install busybox-static)" >&2
    exit 1
}

work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,run,var}
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
while read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

tar_opts=(--numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$root" -cf)
tar "${tar_opts[@]}" "$out/rootfs.tar" .

# The OCI layout: blobs named by their sha256, an uncompressed layer, a config, a manifest, an index.
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
blob() { # blob FILE: moves FILE into the blob store, prints "digest size"
    local digest size
    digest=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$layout/blobs/sha256/$digest"
    echo "$digest $size"
}
cp "$out/rootfs.tar" "$work/layer"
read -r layer_digest layer_size < <(blob "$work/layer")
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"berth peers test"}]}' \
    "$layer_digest" >"$work/config"
read -r config_digest config_size < <(blob "$work/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest"
read -r manifest_digest manifest_size < <(blob "$work/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$name" "$name" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$layout" -cf "$out/oci.tar" .
