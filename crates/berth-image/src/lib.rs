//! `berth-image`: image references, the registry client (distribution spec), the content and layer store in an
//! overlay2 layout, pull and push.

// Helper A: references, digests, the registry client, credentials.
pub mod credentials;
pub mod digest;
pub mod reference;
pub mod registry;

// Helper B: the stores, unpacking, pull, images, archives.
pub mod archive;
pub mod image;
pub mod layers;
pub mod pull;
pub mod store;
pub mod units;
pub mod unpack;
