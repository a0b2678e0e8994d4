//! Content type by magic bytes, against the allow-list (JPEG, PNG, HEIC, PDF, MP4). The
//! client's `Content-Type` and file name are never trusted.

/// How many leading bytes `sniff` wants (fewer only at end of file).
pub const SNIFF_LEN: usize = 64;

/// An allowed kind of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Heic,
    Pdf,
    Mp4,
}

impl Kind {
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::Heic => "image/heic",
            Kind::Pdf => "application/pdf",
            Kind::Mp4 => "video/mp4",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpg",
            Kind::Png => "png",
            Kind::Heic => "heic",
            Kind::Pdf => "pdf",
            Kind::Mp4 => "mp4",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Kind> {
        [Kind::Jpeg, Kind::Png, Kind::Heic, Kind::Pdf, Kind::Mp4]
            .into_iter()
            .find(|k| k.mime() == mime)
    }

    pub fn is_image(self) -> bool {
        matches!(self, Kind::Jpeg | Kind::Png | Kind::Heic)
    }
}

/// ISO BMFF brands of HEIC/HEIF images made of HEVC-coded pictures.
const HEIC_BRANDS: &[&[u8; 4]] = &[b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"];
/// Generic HEIF brands: HEIC only when a HEVC brand is among the compatible ones.
const HEIF_BRANDS: &[&[u8; 4]] = &[b"mif1", b"msf1"];
/// MP4 brands (ISO/IEC 14496-12/14 and common writers). QuickTime (`qt  `) is not MP4.
const MP4_BRANDS: &[&[u8; 4]] = &[
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ",
    b"dash",
];

/// Identify `head` (the first `SNIFF_LEN` bytes of a file, or all of a shorter one).
pub fn sniff(head: &[u8]) -> Option<Kind> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(Kind::Jpeg);
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(Kind::Png);
    }
    if head.starts_with(b"%PDF-") {
        return Some(Kind::Pdf);
    }
    ftyp(head)
}

/// An ISO base media file starts with an `ftyp` box: size (u32 BE), "ftyp", major brand,
/// minor version, then compatible brands up to the box size.
fn ftyp(head: &[u8]) -> Option<Kind> {
    if head.len() < 16 || &head[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if size < 16 {
        return None;
    }
    let major: &[u8; 4] = head[8..12].try_into().ok()?;
    let compatible: Vec<&[u8; 4]> = head[16..size.min(head.len())]
        .chunks_exact(4)
        .filter_map(|c| c.try_into().ok())
        .collect();
    let any = |set: &[&[u8; 4]], b: &[u8; 4]| set.contains(&b);
    if any(HEIC_BRANDS, major) {
        return Some(Kind::Heic);
    }
    if any(HEIF_BRANDS, major) {
        return compatible
            .iter()
            .any(|b| any(HEIC_BRANDS, b))
            .then_some(Kind::Heic);
    }
    if any(MP4_BRANDS, major) {
        return Some(Kind::Mp4);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp_box(major: &[u8; 4], compat: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compat.len();
        let mut v = (size as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(major);
        v.extend_from_slice(&[0, 0, 0, 0]);
        for c in compat {
            v.extend_from_slice(*c);
        }
        v.extend_from_slice(&[0; 16]);
        v
    }

    #[test]
    fn allowed_kinds() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]), Some(Kind::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(Kind::Png));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some(Kind::Pdf));
        assert_eq!(sniff(&ftyp_box(b"heic", &[b"mif1"])), Some(Kind::Heic));
        assert_eq!(
            sniff(&ftyp_box(b"mif1", &[b"mif1", b"heic"])),
            Some(Kind::Heic)
        );
        assert_eq!(
            sniff(&ftyp_box(b"isom", &[b"isom", b"avc1"])),
            Some(Kind::Mp4)
        );
        assert_eq!(sniff(&ftyp_box(b"mp42", &[])), Some(Kind::Mp4));
    }

    #[test]
    fn refused_kinds() {
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), None);
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0"), None);
        assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), None);
        assert_eq!(sniff(&ftyp_box(b"qt  ", &[b"qt  "])), None);
        assert_eq!(sniff(&ftyp_box(b"mif1", &[b"avif"])), None);
        assert_eq!(sniff(&ftyp_box(b"avif", &[b"mif1"])), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[0xFF, 0xD8]), None);
    }
}
