//! The invitation mail: a one-time enrollment link and what to do with it, German first and
//! English second, as plain text and as HTML with the same words. It never holds a key or a
//! config: the device that opens the link gets those, once.

use crate::escape_markup;

/// What one invitation mail says.
#[derive(Debug, Clone)]
pub struct InvitationMail<'a> {
    pub user: &'a str,
    pub device: &'a str,
    /// The one-time link.
    pub link: &'a str,
    /// When the link stops working, Unix seconds.
    pub expires_at: i64,
    /// Whom to call, if the gateway's settings name someone.
    pub helpdesk: Option<&'a str>,
    /// A reminder: its link replaces the one sent earlier.
    pub reminder: bool,
}

/// Where the staff a link is for live: its deadline is shown in their local time.
pub const LOCAL_TIME_ZONE: &str = "Europe/Berlin";

/// When a link stops working, as a reader in Germany writes it, in their local time with the
/// zone's abbreviation ("12.12.2026 10:27 CET"); in UTC if the zone is unknown.
pub fn deadline(at: i64) -> String {
    let Ok(t) = jiff::Timestamp::from_second(at) else {
        return at.to_string();
    };
    match jiff::tz::TimeZone::get(LOCAL_TIME_ZONE) {
        Ok(tz) => t.to_zoned(tz).strftime("%d.%m.%Y %H:%M %Z").to_string(),
        Err(_) => t.strftime("%d.%m.%Y %H:%M UTC").to_string(),
    }
}

/// One paragraph or list item in both renderings.
enum Block {
    Para(String),
    Steps(Vec<String>),
    Link,
}

impl InvitationMail<'_> {
    pub fn subject(&self) -> String {
        let base = format!(
            "VPN-Zugang für {} / VPN access for {}",
            self.device, self.device
        );
        if self.reminder {
            format!("Erinnerung / Reminder: {base}")
        } else {
            base
        }
    }

    fn german(&self) -> Vec<Block> {
        let mut b = vec![
            Block::Para(format!("Guten Tag {},", self.user)),
            Block::Para(format!(
                "für Ihr Gerät „{}“ ist ein VPN-Zugang vorbereitet, damit Sie von zu Hause aus \
                 arbeiten können. So richten Sie ihn ein:",
                self.device
            )),
            Block::Steps(vec![
                "Installieren Sie die App „WireGuard“: iPad und iPhone aus dem App Store, \
                 Android aus Google Play, Windows und macOS von wireguard.com/install."
                    .into(),
                "Öffnen Sie diesen Link auf dem Gerät, das Sie einrichten, und tippen Sie dort \
                 auf „Jetzt einrichten“:"
                    .into(),
            ]),
            Block::Link,
            Block::Para(format!(
                "Der Link funktioniert einmal und bis {}.{} Diese E-Mail enthält keinen \
                 Schlüssel: den bekommt nur das Gerät, das den Link öffnet. Bitte leiten Sie \
                 sie nicht weiter.",
                deadline(self.expires_at),
                if self.reminder {
                    " Er ersetzt den Link aus der früheren E-Mail, der nicht mehr gilt."
                } else {
                    ""
                }
            )),
        ];
        if let Some(h) = self.helpdesk {
            b.push(Block::Para(format!("Hilfe: {h}")));
        }
        b
    }

    fn english(&self) -> Vec<Block> {
        let mut b = vec![
            Block::Para(format!("Hello {},", self.user)),
            Block::Para(format!(
                "VPN access is ready for your device “{}”, so that you can work from home. To \
                 set it up:",
                self.device
            )),
            Block::Steps(vec![
                "Install the “WireGuard” app: App Store (iPad, iPhone), Google Play (Android), \
                 wireguard.com/install (Windows, macOS)."
                    .into(),
                "Open the link above on the device you are setting up and tap “Set up now” \
                 there."
                    .into(),
            ]),
            Block::Para(format!(
                "The link works once and until {}.{} This mail holds no key: only the device \
                 that opens the link gets one. Please do not forward it.",
                deadline(self.expires_at),
                if self.reminder {
                    " It replaces the link of the earlier mail, which no longer works."
                } else {
                    ""
                }
            )),
        ];
        if let Some(h) = self.helpdesk {
            b.push(Block::Para(format!("Help: {h}")));
        }
        b
    }

    /// The plain-text part.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out, self.german());
        out.push_str("-- English --\n\n");
        self.write_text(&mut out, self.english());
        out
    }

    fn write_text(&self, out: &mut String, blocks: Vec<Block>) {
        for block in blocks {
            match block {
                Block::Para(p) => out.push_str(&p),
                Block::Steps(steps) => {
                    let numbered: Vec<String> = steps
                        .iter()
                        .enumerate()
                        .map(|(i, s)| format!("{}. {s}", i + 1))
                        .collect();
                    out.push_str(&numbered.join("\n"));
                }
                // On a line of its own, so that mail programs make it clickable whole.
                Block::Link => out.push_str(&format!("   {}", self.link)),
            }
            out.push_str("\n\n");
        }
    }

    /// The HTML part: the same words, every interpolation escaped.
    pub fn html(&self) -> String {
        let mut out = String::from(
            "<!DOCTYPE html><html lang=\"de\"><head><meta charset=\"utf-8\"></head>\
             <body style=\"font-family: sans-serif; line-height: 1.4\">",
        );
        self.write_html(&mut out, self.german(), "de");
        out.push_str("<hr>");
        self.write_html(&mut out, self.english(), "en");
        out.push_str("</body></html>");
        out
    }

    fn write_html(&self, out: &mut String, blocks: Vec<Block>, lang: &str) {
        out.push_str(&format!("<div lang=\"{lang}\">"));
        for block in blocks {
            match block {
                Block::Para(p) => out.push_str(&format!("<p>{}</p>", escape_markup(&p))),
                Block::Steps(steps) => {
                    out.push_str("<ol>");
                    for s in steps {
                        out.push_str(&format!("<li>{}</li>", escape_markup(&s)));
                    }
                    out.push_str("</ol>");
                }
                Block::Link => {
                    let link = escape_markup(self.link);
                    out.push_str(&format!(
                        "<p><a href=\"{link}\" style=\"font-size: 1.15em\">{link}</a></p>"
                    ));
                }
            }
        }
        out.push_str("</div>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(reminder: bool) -> InvitationMail<'static> {
        InvitationMail {
            user: "Jürgen <Weiß>",
            device: "Büro & Laptop",
            link: "https://vpn.stadt.example/enroll/hw_abc",
            expires_at: 1_765_000_000,
            helpdesk: Some("IT-Service, Tel. 1234"),
            reminder,
        }
    }

    #[test]
    fn both_parts_say_the_link_in_german_first_and_escape_what_they_interpolate() {
        let m = mail(false);
        let text = m.text();
        let de = text.find("Guten Tag").unwrap();
        let en = text.find("Hello").unwrap();
        assert!(de < en);
        assert!(text.contains("\n   https://vpn.stadt.example/enroll/hw_abc\n"));
        assert!(text.contains("06.12.2025 06:46 CET"), "{text}");
        assert!(text.contains("Hilfe: IT-Service, Tel. 1234"));
        let html = m.html();
        assert!(html.contains("Jürgen &lt;Weiß&gt;"));
        assert!(html.contains("Büro &amp; Laptop"));
        assert!(!html.contains("<Weiß>"));
        assert!(html.contains("href=\"https://vpn.stadt.example/enroll/hw_abc\""));
        assert!(!text.contains("Erinnerung") && !m.subject().contains("Erinnerung"));
    }

    #[test]
    fn deadlines_are_in_berlin_time_across_the_clock_changes() {
        // 2026-03-29 00:30 UTC is 01:30 CET; 01:30 UTC, after the change, 03:30 CEST.
        assert_eq!(deadline(1_774_744_200), "29.03.2026 01:30 CET");
        assert_eq!(deadline(1_774_747_800), "29.03.2026 03:30 CEST");
        // 2026-10-25 00:20 UTC is 02:20 CEST; 01:00 UTC, after the change back, 02:00 CET.
        assert_eq!(deadline(1_792_887_600), "25.10.2026 02:20 CEST");
        assert_eq!(deadline(1_792_890_000), "25.10.2026 02:00 CET");
    }

    #[test]
    fn a_reminder_says_that_the_earlier_link_is_gone() {
        let m = mail(true);
        assert!(m.subject().starts_with("Erinnerung / Reminder: "));
        assert!(m
            .text()
            .contains("Er ersetzt den Link aus der früheren E-Mail"));
        assert!(m
            .text()
            .contains("It replaces the link of the earlier mail"));
    }
}
