//! CBOR messages in length-prefixed frames, with hard size limits.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of CBOR.
//! The length is checked against the limit *before* anything is read, and the
//! body is read through `take`, so a peer cannot make us allocate more than
//! the limit, whatever it claims. ciborium itself has no size limit, which is
//! why the frame carries one.

use std::{io, marker::PhantomData, sync::Arc};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use serde::{de::DeserializeOwned, Serialize};

use crate::traffic::Traffic;

/// Largest request, membership or call (a join carries one record).
pub const MAX_CONTROL_REQUEST: usize = 64 * 1024;
/// Largest answer any request may have (a welcome carries the whole map);
/// each request bounds its own answer below it ([`AnswerLimit`]).
pub const MAX_CONTROL_RESPONSE: usize = 8 * 1024 * 1024;
/// The bound of an answer that says little (an acknowledgement, a fetch's
/// id or state, a probe's result): room for any refusal, whose reason is
/// at most [`crate::refusal::MAX_REASON_BYTES`].
pub const SMALL_ANSWER: usize = 8 * 1024;
/// Largest gossip message (one record).
pub const MAX_GOSSIP_MESSAGE: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame ended after {got} of {len} bytes")]
    Truncated { got: usize, len: usize },
    #[error("malformed CBOR message: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

impl From<CodecError> for io::Error {
    fn from(err: CodecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

/// Serializes `value` to CBOR, refusing to produce a frame over `max` bytes.
pub fn encode<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, CodecError> {
    let mut body = Vec::new();
    ciborium::into_writer(value, &mut body).map_err(|e| CodecError::Encode(e.to_string()))?;
    if body.len() > max {
        return Err(CodecError::TooLarge {
            len: body.len(),
            max,
        });
    }
    Ok(body)
}

/// Parses CBOR bytes; any malformation is an error, never a panic.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    ciborium::from_reader(bytes).map_err(|e| CodecError::Decode(e.to_string()))
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(CodecError::TooLarge { len, max }.into());
    }
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    io.take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(CodecError::Truncated {
            got: body.len(),
            len,
        }
        .into());
    }
    Ok(body)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await
}

/// A message as one frame: any serde type as its CBOR, or a frame kept as
/// it came when only its reader knows its type
/// (a call's answer frame, in `calls/`).
pub trait Framed: Sized + Send {
    fn to_frame(&self, max: usize) -> Result<Vec<u8>, CodecError>;
    fn from_frame(body: Vec<u8>) -> Result<Self, CodecError>;
}

impl<T: Serialize + DeserializeOwned + Send> Framed for T {
    fn to_frame(&self, max: usize) -> Result<Vec<u8>, CodecError> {
        encode(self, max)
    }

    fn from_frame(body: Vec<u8>) -> Result<Self, CodecError> {
        decode(&body)
    }
}

/// A request that bounds its own answer: the codec reads at most this many
/// bytes of the answer frame, checked on the frame's length before its
/// body is read, so a peer cannot make an acknowledgement cost megabytes.
pub trait AnswerLimit {
    /// The largest answer frame this request may get, refusals included.
    fn answer_limit(&self) -> usize;
}

/// A request-response codec for any pair of framed types, one frame each
/// way. It is cloned for every stream, and each stream carries one request
/// and its answer: the asker's clone keeps the bound of the request it
/// wrote, and reads no more of the answer. (The answerer seals its answer
/// within the same bound, `AnswerFrame::seal`, so that one too large
/// becomes a refusal that says so rather than a stream cut short.)
pub struct CborCodec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    /// The bound of this stream's answer, once its request is written.
    answer_limit: Option<usize>,
    /// Every frame read or written is counted here.
    traffic: Arc<Traffic>,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> CborCodec<Req, Resp> {
    pub fn new(max_request: usize, max_response: usize) -> Self {
        Self::counted(max_request, max_response, Arc::default())
    }

    /// A codec that counts its frames in `traffic`.
    pub fn counted(max_request: usize, max_response: usize, traffic: Arc<Traffic>) -> Self {
        Self {
            max_request,
            max_response,
            answer_limit: None,
            traffic,
            _types: PhantomData,
        }
    }

    /// The bound of this stream's answer: its request's, within the
    /// codec's own.
    fn answer_max(&self) -> usize {
        self.answer_limit
            .map_or(self.max_response, |limit| limit.min(self.max_response))
    }

    fn read_counted(&self, body: &[u8]) {
        self.traffic.received(FRAME_PREFIX + body.len());
    }

    fn write_counted(&self, body: &[u8]) {
        self.traffic.sent(FRAME_PREFIX + body.len());
    }
}

/// The length in front of every frame.
const FRAME_PREFIX: usize = 4;

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::counted(self.max_request, self.max_response, self.traffic.clone())
    }
}

impl<Req, Resp> request_response::Codec for CborCodec<Req, Resp>
where
    Req: Framed + AnswerLimit,
    Resp: Framed,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, self.max_request).await?;
        self.read_counted(&body);
        Ok(Req::from_frame(body)?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, self.answer_max()).await?;
        self.read_counted(&body);
        Ok(Resp::from_frame(body)?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.answer_limit = Some(req.answer_limit());
        let body = req.to_frame(self.max_request)?;
        self.write_counted(&body);
        write_frame(io, &body).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = resp.to_frame(self.max_response)?;
        self.write_counted(&body);
        write_frame(io, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        calls::AnswerFrame,
        membership::{Leave, MembershipRequest},
        messages::Departure,
    };
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new(crate::membership::MEMBERSHIP_PROTOCOL)
    }

    fn codec() -> CborCodec<MembershipRequest, MembershipRequest> {
        CborCodec::new(1024, 4096)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn round_trip() {
        let mut wire = Vec::new();
        block_on(codec().write_request(
            &protocol(),
            &mut wire,
            MembershipRequest::Leave(Leave {
                departure: Departure::Shutdown,
            }),
        ))
        .unwrap();
        let back = block_on(codec().read_request(&protocol(), &mut Cursor::new(wire))).unwrap();
        assert!(matches!(
            back,
            MembershipRequest::Leave(Leave {
                departure: Departure::Shutdown
            })
        ));
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_the_body() {
        // Claims 4 GiB - 1 and carries nothing: must fail on the length alone.
        let wire = u32::MAX.to_be_bytes().to_vec();
        let err = block_on(codec().read_request(&protocol(), &mut Cursor::new(wire))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
    }

    /// The answer to a leave is an acknowledgement: a frame claiming more
    /// than its bound is refused on its length, though it is far below the
    /// codec's own bound.
    #[test]
    fn an_answer_is_bounded_by_its_request() {
        let leave = MembershipRequest::Leave(Leave {
            departure: Departure::Shutdown,
        });
        let mut asker = CborCodec::<MembershipRequest, AnswerFrame>::new(1024, 1 << 20);
        block_on(asker.write_request(&protocol(), &mut Vec::new(), leave)).unwrap();
        let mut wire = (100_000u32).to_be_bytes().to_vec();
        wire.resize(4 + 100_000, 0);
        let err = block_on(asker.read_response(&protocol(), &mut Cursor::new(wire))).unwrap_err();
        let expected = format!("frame of 100000 bytes exceeds the limit of {SMALL_ANSWER} bytes");
        assert!(err.to_string().contains(&expected), "{err}");
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut wire = 100u32.to_be_bytes().to_vec();
        wire.extend_from_slice(&[0xa0; 10]);
        assert!(block_on(codec().read_request(&protocol(), &mut Cursor::new(wire))).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        // A deterministic pseudo-random walk over many garbage bodies.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..600usize {
            let mut body = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                body.push(state as u8);
            }
            let mut wire = (len as u32).to_be_bytes().to_vec();
            wire.extend_from_slice(&body);
            let result = block_on(codec().read_request(&protocol(), &mut Cursor::new(wire)));
            // Random bytes spelling a valid request is not going to happen
            // with this fixed sequence: each one must be refused.
            assert!(
                result.is_err(),
                "garbage of {len} bytes decoded: {result:?}"
            );
        }
    }

    #[test]
    fn deeply_nested_cbor_is_refused() {
        // 1000 nested one-element arrays: must hit ciborium's recursion limit.
        let mut body = vec![0x81u8; 1000];
        body.push(0x00);
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&body);
        assert!(block_on(codec().read_request(&protocol(), &mut Cursor::new(wire))).is_err());
    }

    #[test]
    fn encoding_over_the_limit_is_refused() {
        let big = "x".repeat(2000);
        let err = encode(&big, 1024).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }));
    }
}
