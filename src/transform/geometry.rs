//! The geometry of each view, the same on every device: where its crop or window lies in the
//! full-resolution image (drawn from the keyed streams of [`super::params`]), which part of
//! the image a set of views reads (what the decoders decode), and how that maps onto the
//! decoded pixels and the output view.

use super::params::{
    CropBox, Draw, center_crop_axis, random_resized_crop_for, resized_shorter_side,
};
use super::spec::Geometry;
use crate::decode::{Decoded, Rect};

/// One view's geometry in full-resolution pixels of the image.
#[derive(Debug, Clone, Copy)]
pub enum ViewGeometry {
    /// Resize exactly this crop to the output (pixels outside it are never read).
    Crop(CropBox),
    /// Resize the whole image to `resized` (height, width), then take `window` of it, which
    /// may extend past it (padding with zeros): per axis (start, length, offset in output).
    Window {
        resized: (u32, u32),
        rows: (u32, u32, u32),
        cols: (u32, u32, u32),
    },
}

pub fn view_geometry(
    geometry: &Geometry,
    draw: Draw,
    view: u64,
    height: u32,
    width: u32,
) -> ViewGeometry {
    match *geometry {
        Geometry::RandomResizedCrop { scale, ratio, .. } => ViewGeometry::Crop(
            random_resized_crop_for(draw.view(view), height, width, scale, ratio),
        ),
        Geometry::CenterCrop {
            height: ch,
            width: cw,
            resize,
        } => {
            let resized = match resize {
                Some(size) => resized_shorter_side(height, width, size),
                None => (height, width),
            };
            ViewGeometry::Window {
                resized,
                rows: center_crop_axis(resized.0, ch),
                cols: center_crop_axis(resized.1, cw),
            }
        }
    }
}

/// The part of an image (full-resolution pixels) its views read: the union of their crops
/// when every view is a crop, `None` (the whole image) otherwise. Both decoders decode only
/// this.
pub fn read_region<'a>(views: impl IntoIterator<Item = &'a ViewGeometry>) -> Option<Rect> {
    views
        .into_iter()
        .map(|g| match g {
            ViewGeometry::Crop(c) => Some(Rect {
                x: c.left,
                y: c.top,
                w: c.width,
                h: c.height,
            }),
            ViewGeometry::Window { .. } => None,
        })
        .collect::<Option<Vec<Rect>>>()
        .and_then(|crops| crops.into_iter().reduce(Rect::union))
}

/// What one view must become: output (height, width), flipped or not, from an image whose
/// full resolution is `full` (height, width).
pub struct Target {
    pub size: (u32, u32),
    pub flip: bool,
    pub full: (u32, u32),
}

/// A view's source and destination, in decoded pixels and output pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// The part of the decoded image the filter may read: x, y, width, height.
    pub window: [u32; 4],
    /// The box, relative to the window, that is resized onto the paste rectangle: x, y, w, h.
    pub bbox: [f64; 4],
    /// Where the resized box lands in the view (x, y, width, height); the rest is zero.
    pub paste: [u32; 4],
}

/// The region of one view, for an image decoded as `decoded`.
pub fn source_region(geometry: ViewGeometry, target: &Target, decoded: &Decoded) -> Region {
    let (oh, ow) = target.size;
    let s = decoded.scale();
    let (x0, y0) = (decoded.x0 as f64, decoded.y0 as f64);
    match geometry {
        ViewGeometry::Crop(c) => {
            // The crop in decoded pixels; torchvision crops first, so the filter reads only
            // pixels inside it.
            let bx = (c.left as f64 * s - x0).max(0.0);
            let by = (c.top as f64 * s - y0).max(0.0);
            let bw = (c.width as f64 * s).min(decoded.width as f64 - bx);
            let bh = (c.height as f64 * s).min(decoded.height as f64 - by);
            let (cx0, cy0) = (bx.floor() as u32, by.floor() as u32);
            let cx1 = ((bx + bw).ceil() as u32).min(decoded.width);
            let cy1 = ((by + bh).ceil() as u32).min(decoded.height);
            Region {
                window: [cx0, cy0, cx1 - cx0, cy1 - cy0],
                bbox: [bx - cx0 as f64, by - cy0 as f64, bw, bh],
                paste: [0, 0, ow, oh],
            }
        }
        ViewGeometry::Window {
            resized,
            rows,
            cols,
        } => {
            // Resized pixel r is full-resolution pixel r · full / resized, decoded pixel · s.
            let fy = target.full.0 as f64 / resized.0 as f64 * s;
            let fx = target.full.1 as f64 / resized.1 as f64 * s;
            let by = rows.0 as f64 * fy - y0;
            let bx = cols.0 as f64 * fx - x0;
            let bh = (rows.1 as f64 * fy).min(decoded.height as f64 - by);
            let bw = (cols.1 as f64 * fx).min(decoded.width as f64 - bx);
            Region {
                window: [0, 0, decoded.width, decoded.height],
                bbox: [bx, by, bw, bh],
                paste: [cols.2, rows.2, cols.1, rows.1],
            }
        }
    }
}
