//! Drawing a picture once for two backends and writing it as PNG and SVG, with the embedded font.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{PlotError, draw};

/// DejaVu Sans, embedded so that text renders without any installed font (licence in `fonts/`).
static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The font family every picture uses; registered to the embedded font.
pub(crate) const FONT: &str = "sans-serif";

/// Background of every picture.
pub(crate) const BACKGROUND: RGBColor = WHITE;

/// Registers the embedded font once per process.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

/// A picture that can draw itself on any plotters backend.
pub trait Picture {
    /// What the picture is, for error messages (e.g. "training curves").
    const WHAT: &'static str;
    /// Width and height in pixels (SVG user units).
    fn size(&self) -> (u32, u32);
    /// Draws the picture on `root`, which is already filled with the background.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), PlotError>;
}

/// The files one picture was written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub png: PathBuf,
    pub svg: PathBuf,
    pub width: u32,
    pub height: u32,
}

/// Draws `picture` and writes `dir/name.png` and `dir/name.svg` (atomically; `dir` is created).
pub fn render<P: Picture>(picture: &P, dir: &Path, name: &str) -> Result<Rendered, PlotError> {
    register_font()?;
    let (width, height) = picture.size();
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&BACKGROUND).map_err(draw)?;
        picture.draw(&root)?;
        root.present().map_err(draw)?;
    }
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&BACKGROUND).map_err(draw)?;
        picture.draw(&root)?;
        root.present().map_err(draw)?;
    }
    let png = encode_png(&rgb, width, height)?;

    let png_path = dir.join(format!("{name}.png"));
    let svg_path = dir.join(format!("{name}.svg"));
    emvae_core::run::write_atomic(&png_path, &png)?;
    emvae_core::run::write_atomic(&svg_path, svg.as_bytes())?;
    Ok(Rendered {
        png: png_path,
        svg: svg_path,
        width,
        height,
    })
}

/// An 8-bit RGB buffer as PNG bytes.
fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder
        .write_header()
        .map_err(|e| PlotError::Png(e.to_string()))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| PlotError::Png(e.to_string()))?;
    writer.finish().map_err(|e| PlotError::Png(e.to_string()))?;
    Ok(out)
}

/// The `i`-th colour of a categorical palette (Tableau 10, repeating).
pub fn palette(i: usize) -> RGBColor {
    const COLOURS: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = COLOURS[i % COLOURS.len()];
    RGBColor(r, g, b)
}

/// A range covering the finite `values` with a 5% margin (a unit range around a single value; `0..1`
/// when there is none).
pub(crate) fn padded_range(values: impl IntoIterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= 1e-9 * hi.abs().max(lo.abs()) || span == 0.0 {
        let pad = if hi == 0.0 { 0.5 } else { 0.1 * hi.abs() };
        return lo - pad..hi + pad;
    }
    lo - 0.05 * span..hi + 0.05 * span
}

/// Draws a chart's legend in the style every picture shares (small text on a translucent white box with a
/// grey border) at `position`.
pub(crate) fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .position(position)
        .draw()
        .map_err(draw)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Checks shared by the pictures' tests: the files are a PNG and an SVG of the expected size with
    //! non-trivial content and the expected text.

    use super::Rendered;

    /// Width and height from a PNG's IHDR, after checking the signature.
    pub fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let be =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        (be(16), be(20))
    }

    /// Distinct colours and the fraction of non-white pixels of a PNG.
    pub fn png_content(bytes: &[u8]) -> (usize, f64) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut buf).expect("PNG data");
        let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()]
            .chunks(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        let distinct: std::collections::HashSet<[u8; 3]> = pixels.iter().copied().collect();
        let ink = pixels.iter().filter(|p| **p != [255, 255, 255]).count();
        (distinct.len(), ink as f64 / pixels.len() as f64)
    }

    /// Asserts that `r` is a non-trivial PNG + SVG of its size that contains every `texts`.
    pub fn check(r: &Rendered, texts: &[&str]) {
        let png = std::fs::read(&r.png).expect("PNG written");
        assert_eq!(png_size(&png), (r.width, r.height));
        let (colours, ink) = png_content(&png);
        assert!(colours > 8, "{}: only {colours} colours", r.png.display());
        assert!(ink > 0.01, "{}: only {ink} ink", r.png.display());
        let svg = std::fs::read_to_string(&r.svg).expect("SVG written");
        assert!(svg.contains("<svg"), "not an SVG");
        assert!(svg.contains(&format!("width=\"{}\"", r.width)));
        assert!(svg.contains(&format!("height=\"{}\"", r.height)));
        assert!(svg.trim_end().ends_with("</svg>"));
        for t in texts {
            assert!(svg.contains(t), "{} lacks the text {t:?}", r.svg.display());
        }
    }
}
