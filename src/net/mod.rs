//! Networking: consumer connections and their limits (`conn`), upstream
//! clients and request bodies (`upstream`), and the header rules of a proxy
//! in the middle (`headers`, `redirect`, `validators`).

pub(crate) mod conn;
pub mod headers;
pub(crate) mod redirect;
pub mod upstream;
pub(crate) mod validators;
