//! Tiling of a weight matrix onto physical arrays.
//!
//! A weight of shape `[out, in]` (a conv weight `[O, C, k, k]` is the matrix `[O, C·k·k]`, inputs
//! in OIHW flattening order `c·k·k + ky·k + kx`) sits on crossbars whose rows are driven by inputs
//! and whose columns sense outputs. With physical arrays of at most `rows × cols` cells the matrix
//! is cut into a grid of tiles: input (row) blocks of `rows` consecutive inputs and output (column)
//! blocks of `cols` consecutive outputs, the last block of each axis possibly smaller. Tiles are
//! numbered row-block-major: tile `r·n_col_blocks + c`.

use super::types::TileSize;

/// One physical array holding a block of the weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Index of the tile in the array's tiling.
    pub index: usize,
    /// Input range `[start, end)` (crossbar rows).
    pub rows: (usize, usize),
    /// Output range `[start, end)` (crossbar columns).
    pub cols: (usize, usize),
}

impl Tile {
    /// Number of inputs.
    pub fn n_rows(&self) -> usize {
        self.rows.1 - self.rows.0
    }
    /// Number of outputs.
    pub fn n_cols(&self) -> usize {
        self.cols.1 - self.cols.0
    }
}

/// The tiles of an `[out, inp]` matrix on arrays of `size`.
pub fn tiles(out: usize, inp: usize, size: TileSize) -> Vec<Tile> {
    let mut t = Vec::new();
    if out == 0 || inp == 0 || size.rows == 0 || size.cols == 0 {
        return t;
    }
    let mut r0 = 0;
    while r0 < inp {
        let r1 = (r0 + size.rows).min(inp);
        let mut c0 = 0;
        while c0 < out {
            let c1 = (c0 + size.cols).min(out);
            t.push(Tile {
                index: t.len(),
                rows: (r0, r1),
                cols: (c0, c1),
            });
            c0 = c1;
        }
        r0 = r1;
    }
    t
}
