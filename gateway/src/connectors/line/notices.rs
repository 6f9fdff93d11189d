//! What the gateway itself says to a person on LINE, per channel language (`ja` by default,
//! `ja-easy` for plain Japanese, `en`), and the placeholder an operator sees for content that is
//! not text. The wording follows the widget's catalogues (`widget/i18n/*.json`); the other
//! helplines come from the referral directory.

use crate::directory::Helpline;

/// The texts for one language.
pub struct Notices {
    /// After a follow (friend added or unblocked): who we are and the privacy promise.
    pub greeting: &'static str,
    /// When a conversation starts: received, and the privacy promise in short.
    pub started: &'static str,
    /// Position in the queue, when no wait can be estimated (no operator on duty).
    queue_no_estimate: &'static str,
    /// Position and rough wait; `{p}` and `{m}` are replaced.
    queue_with_estimate: &'static str,
    /// The first operator joined.
    pub joined: &'static str,
    /// Another operator took over (transfer).
    pub joined_again: &'static str,
    /// The operator handed the conversation back to the queue.
    pub requeued: &'static str,
    /// The person sent a sticker, an image, …: only text is read.
    pub text_only: &'static str,
    /// The conversation ended: thanks, what was deleted, other helplines.
    closing_text: &'static str,
    /// The conversation was lost (the service's store lost it): sorry, how to start again,
    /// other helplines.
    gone_text: &'static str,
    /// A group or multi-person chat: this is a one-to-one helpline.
    pub group: &'static str,
    /// For the operator, in place of content that is not text; `{k}` is the kind.
    placeholder: &'static str,
    /// The heading of the other helplines listed in the closing message (the list itself
    /// comes from the referral directory: entries marked for closing messages).
    helplines: &'static str,
    /// The bullet before each helpline.
    bullet: &'static str,
    kinds: [(&'static str, &'static str); 7],
}

const HELPLINES_JA: &str = "ほかの相談先:";

const JA: Notices = Notices {
    greeting: "友だち追加ありがとうございます。ここは、名前を言わずに相談できる窓口です。\
どんな小さなことでも大丈夫です。話したいことを、メッセージで送ってください。順番に相談員がお返事します。\
相談員には、あなたのLINEの名前やアイコンは見えません。\n\n\
【秘密について】ここに書いたことは、相談が終わると消去され、残りません。\
例外はひとつだけです。命や体に危険があると相談員が判断したときは、必要最小限の記録を残し、\
救急や警察などに伝えることがあります（個人情報保護法にもとづきます）。\n\
トークの履歴はあなたのスマートフォンに残ります。気になるときは、トークを削除してください。",
    started: "メッセージを受け取りました。相談員につながるまで、少しお待ちください。\n\
（ここに書いたことは、相談が終わると消去されます。命に危険があるときだけ、例外があります。）",
    queue_no_estimate: "いま {p} 番目です。相談員がつながりしだい、お返事します。",
    queue_with_estimate: "いま {p} 番目です。待ち時間の目安は、およそ {m} 分です。",
    joined: "相談員がつながりました。ここからは相談員がお返事します。",
    joined_again: "別の相談員に交代しました。続けてお話しください。",
    requeued: "相談員が交代します。少しお待ちください。",
    text_only: "ごめんなさい。ここでは文字のメッセージだけを読むことができます。\
スタンプや写真などは相談員に届きません。言葉で送ってください。",
    closing_text: "相談はこれで終わりです。話してくれて、ありがとうございました。\
ここでのやりとりは、こちらでは消去しました。また話したくなったら、いつでもメッセージを送ってください。\n\n",
    gone_text: "ごめんなさい。システムの不具合で、この相談を続けられなくなりました。\
書いてくれたことは、こちらには残っていません。\
もう一度メッセージを送ってもらえれば、新しい相談として、順番に相談員がお返事します。\n\n",
    group: "このアカウントは、ひとりずつお話を聞く相談窓口です。グループでは相談を受けられません。\
相談したいときは、このアカウントとの1対1のトークでメッセージを送ってください。",
    placeholder: "［{k}が送られました。文字以外の内容は表示されません］",
    helplines: HELPLINES_JA,
    bullet: "・",
    kinds: [
        ("sticker", "スタンプ"),
        ("image", "画像"),
        ("video", "動画"),
        ("audio", "音声"),
        ("file", "ファイル"),
        ("location", "位置情報"),
        ("", "文字以外のメッセージ"),
    ],
};

const HELPLINES_JA_EASY: &str = "ほかの そうだん:";

const JA_EASY: Notices = Notices {
    greeting: "ともだち ついか ありがとう。ここは なまえを いわないで そうだん できる ところです。\
どんな ちいさな ことでも だいじょうぶです。メッセージを おくって ください。\
じゅんばんに そうだんいんが へんじを します。そうだんいんには あなたの LINEの なまえや アイコンは みえません。\n\n\
【ひみつの こと】ここに かいた ことは、そうだんが おわると けします。のこりません。\
ひとつだけ ちがう ときが あります。いのちや からだが あぶない と そうだんいんが おもった ときは、\
すこしだけ きろくを のこして、きゅうきゅうしゃや けいさつに つたえる ことが あります。\n\
トークは あなたの スマホに のこります。",
    started: "メッセージを うけとりました。そうだんいんに つながるまで まって ください。\n\
（ここに かいた ことは、そうだんが おわると けします。）",
    queue_no_estimate: "いま {p} ばんめ です。そうだんいんに つながったら へんじを します。",
    queue_with_estimate: "いま {p} ばんめ です。だいたい {m} ぷん まって ください。",
    joined: "そうだんいんに つながりました。",
    joined_again: "ちがう そうだんいんに かわりました。",
    requeued: "そうだんいんが かわります。まって ください。",
    text_only: "ごめんなさい。ここでは もじの メッセージだけ よめます。スタンプや しゃしんは とどきません。",
    closing_text: "そうだんは これで おわりです。はなして くれて ありがとう。\
ここでの やりとりは けしました。また いつでも メッセージを おくって ください。\n\n",
    gone_text: "ごめんなさい。システムの ぐあいが わるくて、この そうだんを つづけられなく なりました。\
かいて くれた ことは、こちらには のこって いません。\
もう いちど メッセージを おくって くれたら、あたらしい そうだんとして、じゅんばんに へんじを します。\n\n",
    group: "ここは ひとりずつ はなしを きく ところです。グループでは そうだん できません。\
この アカウントと 1たい1の トークで おくって ください。",
    placeholder: JA.placeholder,
    helplines: HELPLINES_JA_EASY,
    bullet: "・",
    kinds: JA.kinds,
};

const HELPLINES_EN: &str = "Other places to reach out:";

const EN: Notices = Notices {
    greeting: "Thank you for adding us. Here you can talk without giving your name, \
and no worry is too small. Send a message whenever you are ready and a counsellor will answer \
in turn. Counsellors do not see your LINE name or picture.\n\n\
About privacy: nothing you write here is kept after the conversation ends: it is deleted. \
There is one exception. If a counsellor judges that someone's life or body is in danger, a \
minimal record may be kept and shared with emergency services (as Japan's personal \
information law allows).\nThe chat history stays on your phone; delete the chat if you worry.",
    started: "We got your message. Please wait a little until a counsellor joins.\n\
(What you write is deleted when the conversation ends, with one exception when a life is in danger.)",
    queue_no_estimate: "You are number {p} in line. A counsellor will answer as soon as one is free.",
    queue_with_estimate: "You are number {p} in line. The wait is about {m} minutes.",
    joined: "A counsellor is here now and will answer you.",
    joined_again: "Another counsellor has taken over. Please go on.",
    requeued: "Your counsellor is changing. Please wait a little.",
    text_only: "Sorry, only text messages can be read here. Stickers, photos and other \
content do not reach the counsellor; please write in words.",
    closing_text: "This conversation has ended. Thank you for talking with us. It has been \
deleted on our side. You can write again at any time.\n\n",
    gone_text: "We are sorry: a fault in our system means this conversation cannot go on. \
Nothing you wrote is kept on our side. If you send a message again, it starts a new \
conversation and a counsellor will answer in turn.\n\n",
    group: "This account is a one-to-one helpline and cannot help in group chats. To talk, \
please send a message in a one-to-one chat with this account.",
    placeholder: "[{k} sent; only text is shown]",
    helplines: HELPLINES_EN,
    bullet: "- ",
    kinds: [
        ("sticker", "A sticker"),
        ("image", "An image"),
        ("video", "A video"),
        ("audio", "An audio message"),
        ("file", "A file"),
        ("location", "A location"),
        ("", "Something other than text"),
    ],
};

impl Notices {
    /// The notices for a channel language; unknown languages get Japanese.
    pub fn for_language(language: &str) -> &'static Notices {
        match language {
            "en" => &EN,
            "ja-easy" => &JA_EASY,
            _ => &JA,
        }
    }

    /// The closing message with other helplines (from the directory).
    pub fn closing(&self, helplines: &[Helpline]) -> String {
        format!("{}{}", self.closing_text, self.list(helplines))
    }

    /// The conversation was lost, with how to start again and other helplines.
    pub fn gone(&self, helplines: &[Helpline]) -> String {
        format!("{}{}", self.gone_text, self.list(helplines))
    }

    /// The heading and one line per helpline (name, number, note), bounded so that the
    /// message stays well inside LINE's 5 000 characters.
    fn list(&self, helplines: &[Helpline]) -> String {
        let mut out = self.helplines.to_owned();
        for h in helplines.iter().take(20) {
            out.push('\n');
            out.push_str(self.bullet);
            out.extend(h.name.chars().take(100));
            out.push(' ');
            out.extend(h.number.chars().take(40));
            if !h.note.is_empty() {
                let note: String = h.note.chars().take(100).collect();
                if self.bullet == "- " {
                    out.push_str(&format!(" ({note})"));
                } else {
                    out.push_str(&format!("（{note}）"));
                }
            }
        }
        out
    }

    /// Queue position and rough wait.
    pub fn queue(&self, position: u32, wait_minutes: Option<u32>) -> String {
        match wait_minutes {
            Some(m) => self
                .queue_with_estimate
                .replace("{p}", &position.to_string())
                .replace("{m}", &m.max(1).to_string()),
            None => self.queue_no_estimate.replace("{p}", &position.to_string()),
        }
    }

    /// What the operator sees in place of a message of `kind` that is not text.
    pub fn placeholder(&self, kind: &str) -> String {
        let name = self
            .kinds
            .iter()
            .find(|(k, _)| *k == kind)
            .or(self.kinds.last())
            .map(|(_, n)| *n)
            .unwrap_or_default();
        self.placeholder.replace("{k}", name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helplines(lang: &str) -> Vec<Helpline> {
        crate::directory::builtin_closing(lang)
    }

    #[test]
    fn japanese_is_the_default_and_the_closing_lists_the_helplines() {
        let n = Notices::for_language("xx");
        let closing = n.closing(&helplines("ja"));
        for needle in [
            "よりそいホットライン 0120-279-338",
            "0120-061-338",
            "119",
            "110",
        ] {
            assert!(closing.contains(needle), "{needle}");
        }
        assert!(Notices::for_language("en")
            .closing(&helplines("en"))
            .contains("0120-279-338"));
        assert!(Notices::for_language("ja-easy")
            .closing(&helplines("ja-easy"))
            .contains("0120-061-338"));
    }

    #[test]
    fn a_lost_conversation_is_explained_in_every_language_with_the_helplines() {
        for (lang, again) in [
            ("ja", "もう一度メッセージを送って"),
            ("ja-easy", "もう いちど メッセージを"),
            ("en", "send a message again"),
        ] {
            let gone = Notices::for_language(lang).gone(&helplines(lang));
            assert!(gone.contains(again), "{lang}: {gone}");
            assert!(gone.contains("0120-279-338"), "{lang}: {gone}");
            assert!(gone.chars().count() < 5_000);
        }
    }

    #[test]
    fn queue_and_placeholders_fill_in() {
        let n = Notices::for_language("ja");
        assert_eq!(
            n.queue(3, Some(6)),
            "いま 3 番目です。待ち時間の目安は、およそ 6 分です。"
        );
        assert!(n.queue(1, None).contains("1 番目"));
        assert!(n.placeholder("sticker").contains("スタンプ"));
        assert!(n
            .placeholder("something-new")
            .contains("文字以外のメッセージ"));
    }

    #[test]
    fn every_text_fits_in_one_line_message() {
        // A LINE text message holds at most 5 000 characters.
        for n in [&JA, &JA_EASY, &EN] {
            for t in [n.greeting, n.started, n.text_only, n.group] {
                assert!(t.chars().count() < 5_000);
            }
        }
    }
}
