//! What a `/ws` connection writes for each entry of its queue: the WebSocket message
//! in the connection's codec (text frames for JSON, binary for MessagePack), room
//! frames shared per room and codec, large replies encoded off the shared workers.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

use crate::frames::Codec;
use crate::joined::Joined;
use crate::outbound::Outgoing;

pub fn message(entry: Outgoing, codec: Codec) -> WsMessage {
    match entry {
        Outgoing::Frame(frame) => framed(codec, codec.recode_json(frame)),
        Outgoing::Push(frame) => framed(codec, frame.encoded(codec)),
        Outgoing::Joined(joined) => framed(codec, encode_reply(&joined, codec)),
        Outgoing::Ping => WsMessage::Ping(Bytes::new()),
        Outgoing::Message {
            frame,
            message,
            room,
            conflated,
        } => {
            let frame = match conflated {
                false => frame.encoded(codec, &message, &room),
                true => codec.encode(&message.frame_ref(&room, true)),
            };
            framed(codec, frame)
        }
    }
}

/// Replies this large are encoded with the runtime told this worker is busy, so
/// other connections' tasks move to another thread meanwhile.
const LARGE_REPLY: usize = 256 * 1024;

fn encode_reply(joined: &Joined, codec: Codec) -> Bytes {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let multi_thread = Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
    if joined.size >= LARGE_REPLY && multi_thread {
        tokio::task::block_in_place(|| codec.encode(joined))
    } else {
        codec.encode(joined)
    }
}

/// A text frame for JSON, a binary one for MessagePack.
fn framed(codec: Codec, frame: Bytes) -> WsMessage {
    match codec {
        // Frames are JSON we encoded ourselves (UTF-8); the check is a scan, not a copy.
        Codec::Json => WsMessage::Text(Utf8Bytes::try_from(frame).unwrap_or_default()),
        Codec::MsgPack => WsMessage::Binary(frame),
    }
}
