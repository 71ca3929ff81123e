//! QR codes drawn with Unicode half blocks: two modules per character cell, so a
//! version-5 code fits an 80×24 terminal.

/// Lines of text that draw `text` as a QR code (dark modules as blocks, with a quiet zone).
pub fn half_blocks(text: &str) -> Vec<String> {
    let Ok(qr) = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Low) else {
        return vec!["(the QR code could not be drawn; use the secret below)".into()];
    };
    let border = 1;
    let size = qr.size();
    let dark = |x: i32, y: i32| x >= 0 && y >= 0 && x < size && y < size && qr.get_module(x, y);
    let mut lines = Vec::new();
    let mut y = -border;
    while y < size + border {
        let mut line = String::new();
        for x in -border..size + border {
            // Light terminals and dark ones alike: draw the light modules, keep dark ones blank.
            line.push(match (dark(x, y), dark(x, y + 1)) {
                (true, true) => ' ',
                (true, false) => '▄',
                (false, true) => '▀',
                (false, false) => '█',
            });
        }
        lines.push(line);
        y += 2;
    }
    lines
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_totp_uri_fits_in_24_rows() {
        let uri = "otpauth://totp/Latchkey:operator?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Latchkey";
        let lines = super::half_blocks(uri);
        assert!(lines.len() <= 20, "{} rows", lines.len());
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()));
    }
}
