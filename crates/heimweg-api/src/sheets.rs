//! The printed instruction sheet a staff member gets with their invitation (NET.3.3.A8 asks
//! for such a leaflet): one A4 page per device, German first, English second, with the
//! one-time link as text and as a QR code the phone's camera opens, what to do when something
//! does not work, and whom to call. One HTML document for many sheets; the browser prints it
//! (or saves it as a PDF), a page per sheet.

use heimweg_control::qr::Qr;
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// One sheet: who, which device, and the link that sets it up.
#[derive(Debug, Clone)]
pub struct Sheet<'a> {
    pub user: &'a str,
    pub device: &'a str,
    pub link: &'a str,
    /// Unix seconds.
    pub expires_at: i64,
}

const STYLE: &str = "@page { size: A4; margin: 14mm 16mm; }
body { font: 10.5pt/1.35 system-ui, sans-serif; color: #000; margin: 0; }
.sheet { break-after: page; page-break-after: always; }
.sheet:last-child { break-after: auto; page-break-after: auto; }
h1 { font-size: 15pt; margin: 0 0 2mm; } h2 { font-size: 11.5pt; margin: 4mm 0 1mm; }
.top { display: flex; gap: 6mm; align-items: flex-start; }
.qr svg { width: 42mm; height: 42mm; }
.link { font: 9pt ui-monospace, monospace; word-break: break-all; }
ol, ul { margin: 1mm 0; padding-left: 5mm; } li { margin: 0.6mm 0; }
hr { border: 0; border-top: 1px solid #999; margin: 4mm 0 3mm; }
@media screen { .sheet { max-width: 178mm; margin: 8mm auto; padding-bottom: 8mm; border-bottom: 2px dashed #999; } }";

fn sheet(s: &Sheet<'_>, helpdesk: &str) -> Markup {
    // A QR code of a link of heimweg's own making fits easily; without one the text stays.
    let qr = Qr::encode(s.link).map(|q| q.to_svg()).unwrap_or_default();
    let until = heimweg_control::invitation::deadline(s.expires_at);
    html! {
        section.sheet {
            div.top {
                div {
                    h1 { "VPN-Zugang für " (s.user) }
                    p { "Gerät: " strong { (s.device) } ". Dieser Link richtet es einmal ein und gilt bis " (until) ":" }
                    p.link { (s.link) }
                }
                div.qr role="img" aria-label="QR-Code des Links / QR code of the link" { (PreEscaped(qr)) }
            }
            h2 { "So geht es" }
            ol {
                li { "Installieren Sie die App „WireGuard“: iPad und iPhone aus dem App Store, Android aus Google Play, Windows und macOS von wireguard.com/install." }
                li { "Öffnen Sie den Link auf dem Gerät, das Sie einrichten: Kamera auf den QR-Code richten oder den Link eintippen. Tippen Sie dort auf „Jetzt einrichten“." }
                li { "iPad/iPhone: Profil laden und unter Einstellungen → Profil installieren. Android: in der App + → „Aus QR-Code erstellen“ oder die Datei importieren. Laptop: die .conf-Datei in der App mit „Tunnel importieren“ öffnen." }
                li { "Schalten Sie den Tunnel in der App ein, wenn Sie von zu Hause arbeiten." }
            }
            h2 { "Wenn es nicht klappt" }
            ul {
                li { "„Link ungültig oder abgelaufen“: der Link gilt nur einmal und nur bis zum Datum oben. Bitten Sie um einen neuen." }
                li { "Tunnel an, aber nichts erreichbar: Tunnel aus- und wieder einschalten; stimmen Datum und Uhrzeit des Geräts?" }
                li { "Gerät verloren oder gestohlen: melden Sie es sofort, damit der Zugang gesperrt wird." }
            }
            p { strong { "Hilfe: " } (helpdesk) }
            hr;
            h1 { "VPN access for " (s.user) }
            p { "Device: " strong { (s.device) } ". The link above sets it up once and works until " (until) "." }
            ol {
                li { "Install the “WireGuard” app: App Store (iPad, iPhone), Google Play (Android), wireguard.com/install (Windows, macOS)." }
                li { "Open the link on the device you are setting up: point the camera at the QR code or type the link. Tap “Set up now” there." }
                li { "iPad/iPhone: download the profile, then Settings → Install profile. Android: in the app + → “Create from QR code” or import the file. Laptop: open the .conf file with “Import tunnel” in the app." }
                li { "Switch the tunnel on in the app when you work from home." }
            }
            p { "Link invalid or expired: it works once and only until the date above; ask for a new one. Tunnel on but nothing reachable: switch it off and on; are the device's date and time right? Device lost or stolen: report it at once so that its access is revoked." }
            p { strong { "Help: " } (helpdesk) }
        }
    }
}

/// One document with a sheet per entry; `helpdesk` is whom to call.
pub fn render(sheets: &[Sheet<'_>], helpdesk: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="de" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "VPN – Anleitung / instructions" }
                style { (PreEscaped(STYLE)) }
            }
            body { @for s in sheets { (sheet(s, helpdesk)) } }
        }
    }
    .into_string()
}

/// The sheets of an import's invitations, their links starting with `base_url`.
pub fn for_invitations(
    invitations: &[heimweg_service::Invitation],
    base_url: &str,
    helpdesk: &str,
) -> String {
    let links: Vec<String> = invitations
        .iter()
        .map(|i| format!("{base_url}/enroll/{}", i.secret))
        .collect();
    let sheets: Vec<Sheet<'_>> = invitations
        .iter()
        .zip(&links)
        .map(|(i, link)| Sheet {
            user: i.user.as_str(),
            device: i.device.as_str(),
            link,
            expires_at: i.expires_at,
        })
        .collect();
    render(&sheets, helpdesk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sheet_per_device_german_first_and_every_name_escaped() {
        let sheets = [
            Sheet {
                user: "Jürgen <script>alert(1)</script>",
                device: "Dienst-iPad & Co",
                link: "https://vpn.stadt.example/enroll/hw_abc",
                expires_at: 86_400,
            },
            Sheet {
                user: "Anna",
                device: "Laptop",
                link: "https://vpn.stadt.example/enroll/hw_def",
                expires_at: 86_400,
            },
        ];
        let doc = render(&sheets, "IT-Service, Tel. 0761 201-1234");
        assert_eq!(doc.matches("<section class=\"sheet\">").count(), 2);
        assert!(!doc.contains("<script>"), "names are text");
        assert!(doc.contains("Jürgen &lt;script&gt;") && doc.contains("Dienst-iPad &amp; Co"));
        assert!(doc.contains("https://vpn.stadt.example/enroll/hw_def"));
        assert_eq!(doc.matches("<svg").count(), 2, "a QR code each");
        assert!(doc.contains("02.01.1970 01:00 CET"));
        let german = doc.find("So geht es").unwrap();
        let english = doc.find("VPN access for").unwrap();
        assert!(german < english, "German first");
        assert_eq!(doc.matches("IT-Service, Tel. 0761 201-1234").count(), 4);
    }
}
