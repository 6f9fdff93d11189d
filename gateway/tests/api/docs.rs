//! docs/protocol.md against the code: every JSON example in it is valid JSON, and every frame
//! it shows a client sending is one the gateway parses.

use tsunagu::protocol::{parse_frame, OperatorClient, VisitorClient};

const PROTOCOL_MD: &str = include_str!("../../../docs/protocol.md");

/// Who the code blocks after a line are from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sender {
    Visitor,
    Operator,
    Other,
}

/// The ```json blocks of the document, each with who sends what it shows.
fn json_blocks() -> Vec<(Sender, usize, String)> {
    let mut blocks = Vec::new();
    let (mut section, mut client) = ("", false);
    let mut block: Option<(usize, String)> = None;
    for (n, line) in PROTOCOL_MD.lines().enumerate() {
        if let Some((start, text)) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                let sender = match (client, section) {
                    (true, s) if s.starts_with("## Visitor") => Sender::Visitor,
                    (true, _) => Sender::Operator,
                    _ => Sender::Other,
                };
                blocks.push((sender, *start, std::mem::take(text)));
                block = None;
                // "Client to server:" introduces the one block after it.
                client = false;
            } else {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        }
        if line.starts_with("## ") {
            (section, client) = (line, false);
        } else if line.starts_with("Client to server") || line.starts_with("Operator to server") {
            client = true;
        } else if line.starts_with("Server to client") {
            client = false;
        } else if line.trim_start().starts_with("```json") {
            block = Some((n + 1, String::new()));
        }
    }
    assert!(block.is_none(), "a ```json block is not closed");
    blocks
}

#[test]
fn every_json_example_in_the_protocol_document_is_valid_json() {
    let blocks = json_blocks();
    assert!(blocks.len() >= 8, "found {} blocks", blocks.len());
    for (_, line, text) in &blocks {
        let mut values = 0;
        for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
            if let Err(e) = value {
                panic!("docs/protocol.md line {line}: not valid JSON ({e}):\n{text}");
            }
            values += 1;
        }
        assert!(values > 0, "docs/protocol.md line {line}: an empty block");
    }
}

#[test]
fn every_frame_the_protocol_document_shows_a_client_sending_parses() {
    let mut frames = 0;
    for (sender, line, text) in json_blocks() {
        if sender == Sender::Other {
            continue;
        }
        for frame in text.lines().filter(|l| !l.trim().is_empty()) {
            let parsed = match sender {
                Sender::Visitor => parse_frame::<VisitorClient>(frame).map(|_| ()),
                _ => parse_frame::<OperatorClient>(frame).map(|_| ()),
            };
            if let Err(e) = parsed {
                panic!("docs/protocol.md block at line {line}: {frame} is refused: {e:?}");
            }
            frames += 1;
        }
    }
    assert!(frames >= 20, "found {frames} client frames");
}
