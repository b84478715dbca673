//! The gRPC codec every generated TucDesk service and client uses: prost encoding with small
//! initial buffers.
//!
//! tonic's default codec allocates an 8 KiB encode and an 8 KiB decode buffer per stream. An
//! agent's control stream carries a heartbeat every 15 s and an occasional offer of a few KiB,
//! and a rendezvous replica holds tens of thousands of such streams, so the defaults alone
//! cost 16 KiB per agent. Buffers still grow on demand (up to the message limits checked by
//! the decoders), so large messages such as policy documents are unaffected.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of each stream's encode and decode buffer.
pub const INITIAL_BUFFER_LEN: usize = 1024;
/// Bytes encoded before a streaming encoder yields to the runtime (tonic's default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(INITIAL_BUFFER_LEN, YIELD_THRESHOLD)
}

/// `application/grpc+proto` with [`INITIAL_BUFFER_LEN`] buffers.
#[derive(Debug, Clone)]
pub struct CompactCodec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for CompactCodec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for CompactCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
