//! TwiML: what the caller hears and where the call goes next. Every document the connector
//! answers or sends is built here, from a closed set of verbs: `Say`, `Play`, `Pause`,
//! `Redirect`, `Dial` (to a `Number` or a `Client`), `Gather` (one key, for an alert call's
//! acknowledgement) and `Hangup`. There is no way to ask for a recording: `Record` is not a verb
//! of this module, and neither `Dial` nor `Gather` ever gets a `record` attribute.
//!
//! The words (Japanese) are in [`Words`]; numbers and waits are filled in here.

use super::settings::VoiceSettings;
/// Where a `<Dial>` goes: an operator's phone target, kept with the accounts that configure it.
pub use crate::phone::Target;

/// Escapes text for an XML element or a double-quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 (tab and newlines are), nor are the
            // noncharacters U+FFFE and U+FFFF.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A TwiML document under construction.
#[derive(Default)]
pub struct Twiml {
    body: String,
}

impl Twiml {
    pub fn new() -> Self {
        Twiml::default()
    }

    pub fn say(mut self, language: &str, text: &str) -> Self {
        self.body.push_str(&format!(
            "<Say language=\"{}\">{}</Say>",
            esc(language),
            esc(text)
        ));
        self
    }

    pub fn play(mut self, url: &str) -> Self {
        self.body.push_str(&format!("<Play>{}</Play>", esc(url)));
        self
    }

    pub fn pause(mut self, secs: u32) -> Self {
        self.body
            .push_str(&format!("<Pause length=\"{}\"/>", secs.max(1)));
        self
    }

    pub fn redirect(mut self, url: &str) -> Self {
        self.body.push_str(&format!(
            "<Redirect method=\"POST\">{}</Redirect>",
            esc(url)
        ));
        self
    }

    /// Connects the caller to `target`. `caller_id` is what the operator's phone shows: the
    /// helpline's number, so the caller's own number never reaches the operator. When the
    /// dialled leg ends, the provider posts to `action`.
    pub fn dial(
        mut self,
        target: &Target,
        caller_id: &str,
        timeout_secs: u32,
        action: &str,
    ) -> Self {
        let inner = match target {
            Target::Number(n) => format!("<Number>{}</Number>", esc(n)),
            Target::Client(c) => format!("<Client>{}</Client>", esc(c)),
        };
        self.body.push_str(&format!(
            "<Dial callerId=\"{}\" timeout=\"{timeout_secs}\" action=\"{}\" method=\"POST\">{inner}</Dial>",
            esc(caller_id),
            esc(action)
        ));
        self
    }

    /// Reads `digits` keys while `inner` is spoken (or `timeout_secs` after it), then posts
    /// them to `action`. No input: the document goes on after the `<Gather>`.
    pub fn gather(mut self, digits: u32, timeout_secs: u32, action: &str, inner: Twiml) -> Self {
        self.body.push_str(&format!(
            "<Gather input=\"dtmf\" numDigits=\"{digits}\" timeout=\"{timeout_secs}\" action=\"{}\" method=\"POST\">{}</Gather>",
            esc(action),
            inner.body
        ));
        self
    }

    pub fn hangup(mut self) -> Self {
        self.body.push_str("<Hangup/>");
        self
    }

    pub fn build(self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{}</Response>",
            self.body
        )
    }
}

/// What callers hear, in Japanese.
pub struct Words;

impl Words {
    pub const GREETING: &'static str = "お電話ありがとうございます。こちらは相談窓口です。\
        名前を言わなくても大丈夫です。どんなに小さなことでも、お話しください。";
    pub const PRIVACY: &'static str = "通話は録音しません。あなたの電話番号は相談員には伝わらず、\
        通話が終わると消去されます。ただし、命や体に危険があると相談員が判断したときに限り、\
        必要なことを記録して、関係する機関に伝えることがあります。";
    pub const HOLD: &'static str = "順番に相談員におつなぎします。このままお待ちください。";
    pub const CONNECTING_SOON: &'static str = "まもなく相談員におつなぎします。";
    pub const CONNECTING: &'static str = "相談員におつなぎします。";
    pub const NOBODY_ON_DUTY: &'static str =
        "申し訳ありません。ただいま電話でお話しできる相談員がいません。";
    pub const OVERLOADED: &'static str =
        "申し訳ありません。ただいま多くの方からご相談をいただいていて、おつなぎできません。\
        ほかの相談窓口をご案内します。";
    pub const TOO_LONG: &'static str =
        "お待たせして申し訳ありません。ただいま混み合っていて、おつなぎできません。\
        時間をおいて、もう一度おかけください。";
    pub const BACK_ON_HOLD: &'static str =
        "相談員がかわります。もう一度おつなぎしますので、このままお待ちください。";
    pub const NOT_ANSWERED: &'static str =
        "相談員につながりませんでした。もう一度おつなぎしますので、このままお待ちください。";
    /// The store lost the call's conversation: sorry, call again (the other helplines follow).
    pub const LOST: &'static str =
        "申し訳ありません。システムの不具合で、このままおつなぎすることができなくなりました。\
        お手数ですが、もう一度おかけ直しください。ほかの相談窓口もご案内します。";
    pub const OTHER_HELPLINES: &'static str = "ほかにも相談できる窓口があります。";
    pub const GOODBYE: &'static str =
        "お電話ありがとうございました。また話したくなったら、いつでもおかけください。";

    pub fn position(position: u32, wait_minutes: Option<u32>) -> String {
        let mut s = format!("ただいま {position} 番目にお待ちいただいています。");
        if let Some(m) = wait_minutes.filter(|m| *m > 0) {
            s.push_str(&format!("待ち時間は、およそ {m} 分です。"));
        }
        s
    }
}

/// The documents the connector answers with.
pub struct Documents<'a> {
    pub s: &'a VoiceSettings,
    /// The other helplines a closing lists: the referral directory's entries marked for
    /// closing messages, in Japanese.
    pub helplines: Vec<crate::directory::Helpline>,
}

impl Documents<'_> {
    fn lang(&self) -> &str {
        &self.s.say_language
    }

    /// The hold loop's tail: silence (or music) until the next announcement, then back to `wait`.
    fn hold_tail(&self, doc: Twiml, wait_url: &str) -> Twiml {
        let doc = match &self.s.hold_music_url {
            Some(url) => doc.play(url),
            None => doc.pause(self.s.announce_every_secs),
        };
        doc.redirect(wait_url)
    }

    /// Answer to a new call: greeting and privacy notice, the position, then hold.
    pub fn welcome(&self, position: Option<String>, wait_url: &str) -> String {
        let doc = match &self.s.greeting_audio_url {
            Some(url) => Twiml::new().play(url),
            None => Twiml::new()
                .say(self.lang(), Words::GREETING)
                .say(self.lang(), Words::PRIVACY),
        };
        let doc = doc.say(self.lang(), Words::HOLD);
        let doc = match position {
            Some(p) => doc.say(self.lang(), &p),
            None => doc,
        };
        self.hold_tail(doc, wait_url).build()
    }

    /// One turn of the hold loop: `announce` (a position, or "connecting soon"), then hold.
    pub fn hold(&self, announce: Option<&str>, wait_url: &str) -> String {
        let doc = match announce {
            Some(a) => Twiml::new().say(self.lang(), a),
            None => Twiml::new(),
        };
        self.hold_tail(doc, wait_url).build()
    }

    /// Back to the hold loop after `why` (the operator's line dropped or did not answer).
    pub fn rehold(&self, why: &str, wait_url: &str) -> String {
        Twiml::new()
            .say(self.lang(), why)
            .redirect(wait_url)
            .build()
    }

    /// The other helplines, one sentence each (name, number, hours), then the configured
    /// extra sentences.
    fn helplines(&self, mut doc: Twiml) -> Twiml {
        if !self.helplines.is_empty() {
            doc = doc.say(self.lang(), Words::OTHER_HELPLINES);
        }
        for h in self.helplines.iter().take(10) {
            let mut line = format!("{}、{}。", h.name, h.number);
            if !h.note.is_empty() {
                line.push_str(&format!("{}。", h.note));
            }
            doc = doc.say(self.lang(), &line);
        }
        for extra in &self.s.helplines {
            doc = doc.say(self.lang(), extra);
        }
        doc
    }

    /// Nobody can answer: why, the other helplines, thanks, hang up.
    pub fn turn_away(&self, why: &str) -> String {
        let doc = self.helplines(Twiml::new().say(self.lang(), why));
        doc.say(self.lang(), Words::GOODBYE).hangup().build()
    }

    /// The bridge to an operator (sent through the REST API when an operator accepts).
    pub fn bridge(&self, target: &Target, caller_id: &str, action_url: &str) -> String {
        Twiml::new()
            .say(self.lang(), Words::CONNECTING)
            .dial(target, caller_id, self.s.dial_timeout_secs, action_url)
            .build()
    }

    /// A polite end of the call, with the other helplines.
    pub fn goodbye(&self) -> String {
        self.helplines(Twiml::new())
            .say(self.lang(), Words::GOODBYE)
            .hangup()
            .build()
    }

    /// An empty document (nothing more to do on this call).
    pub fn empty(&self) -> String {
        Twiml::new().build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> (VoiceSettings, Vec<String>) {
        let s = VoiceSettings::default();
        let d = Documents {
            s: &s,
            helplines: crate::directory::builtin_closing("ja"),
        };
        let all = vec![
            d.welcome(Some(Words::position(2, Some(5))), "https://h/wait"),
            d.hold(Some("x"), "https://h/wait"),
            d.rehold(Words::NOT_ANSWERED, "https://h/wait"),
            d.turn_away(Words::NOBODY_ON_DUTY),
            d.bridge(
                &Target::Number("+819012345678".into()),
                "+81300000000",
                "https://h/d",
            ),
            d.bridge(
                &Target::Client("sakura".into()),
                "+81300000000",
                "https://h/d",
            ),
            d.goodbye(),
        ];
        (s, all)
    }

    #[test]
    fn no_document_can_ask_for_a_recording() {
        for doc in docs().1 {
            let lower = doc.to_ascii_lowercase();
            assert!(!lower.contains("<record"), "{doc}");
            assert!(!lower.contains("record="), "{doc}");
            assert!(
                doc.starts_with("<?xml") && doc.ends_with("</Response>"),
                "{doc}"
            );
        }
    }

    #[test]
    fn text_and_attributes_are_escaped() {
        let doc = Twiml::new()
            .say("ja-JP", "a<b & \"c\"")
            .redirect("https://h/w?a=1&b=2")
            .build();
        assert!(doc.contains("a&lt;b &amp; &quot;c&quot;"), "{doc}");
        assert!(doc.contains("https://h/w?a=1&amp;b=2"), "{doc}");
    }

    #[test]
    fn operator_targets_are_numbers_or_client_identities() {
        assert_eq!(
            Target::parse(" +819012345678 "),
            Some(Target::Number("+819012345678".into()))
        );
        assert_eq!(
            Target::parse("client:sakura_1"),
            Some(Target::Client("sakura_1".into()))
        );
        for bad in [
            "09012345678",
            "+81-90",
            "client:",
            "client:a b",
            "sip:x@y",
            "+1",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn positions_read_naturally() {
        assert_eq!(
            Words::position(1, None),
            "ただいま 1 番目にお待ちいただいています。"
        );
        assert!(Words::position(3, Some(7)).contains("およそ 7 分"));
        assert!(!Words::position(3, Some(0)).contains("分"));
    }
}
