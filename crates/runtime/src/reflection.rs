//! gRPC server reflection, so `grpcurl` and similar tools work against any service without
//! a local copy of the protos.
//!
//! Both protocol versions are served: `v1` for current tools, `v1alpha` for the many that
//! still only speak it. The descriptor sets are passed in by the caller (this crate does
//! not depend on the generated API); the health service's own set is always added.

use std::borrow::Cow;

use tonic_reflection::server::v1::{ServerReflection as V1, ServerReflectionServer as V1Server};
use tonic_reflection::server::v1alpha::{
    ServerReflection as V1Alpha, ServerReflectionServer as V1AlphaServer,
};

/// A descriptor set could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid file descriptor set for reflection: {0}")]
pub struct ReflectionError(#[from] tonic_reflection::server::Error);

/// Builds the v1 and v1alpha reflection services for the given encoded
/// `FileDescriptorSet`s.
pub(crate) fn services(
    descriptor_sets: &[Cow<'static, [u8]>],
) -> Result<(V1Server<impl V1>, V1AlphaServer<impl V1Alpha>), ReflectionError> {
    let builder = || {
        descriptor_sets.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
