//! S3 and S3-compatible stores, through aws-sdk-s3: where things are ([`S3Location`]), how to
//! reach them ([`S3Options`], from LitData-style `storage_options`), and an [`S3Client`] that
//! lists prefixes, mirrors objects to local disk with many parallel ranged GETs (`mirror.rs`)
//! and uploads files (`upload.rs`). Used by datasets on S3 (`source::s3`) and by caches shared
//! through S3 (`cache::shared`).
//!
//! Credentials come from the standard AWS chain (environment, profile, SSO, process, instance
//! or task role) unless `storage_options` give keys; they appear in no log, error or `Debug`.

mod client;
mod location;
mod mirror;
mod options;
mod upload;

pub use client::S3Client;
pub use location::{RemoteObject, S3Location};
pub use mirror::Order;
pub use options::S3Options;
