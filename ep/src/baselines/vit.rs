//! A small Vision Transformer: patch embedding (a conv with kernel = stride = patch), a class token,
//! learned position embeddings, `depth` pre-norm blocks (x + MHSA(LN(x)); x + MLP(LN(x)) with GELU),
//! a final layer norm and a linear head on the class token. Tokens are `[N, T, D]`, T = 1 + patches.
//!
//! Parameter names (timm-like, PyTorch layouts; q, k and v are separate linears rather than timm's
//! fused `qkv`): `patch_embed.weight` `[D, C, p, p]`, `patch_embed.bias`, `cls_token` `[1, 1, D]`,
//! `pos_embed` `[1, T, D]`, `blocks.{i}.norm1.{weight,bias}`, `blocks.{i}.attn.{q,k,v,proj}.{weight,bias}`,
//! `blocks.{i}.norm2.{weight,bias}`, `blocks.{i}.mlp.fc1.{weight,bias}`,
//! `blocks.{i}.mlp.fc2.{weight,bias}`, `norm.{weight,bias}`, `head.{weight,bias}`.

use serde::{Deserialize, Serialize};
use sim::tape::{Tape, Var};
use sim::{Act, Backend, Conv2dParams, Error, Result, Stream, Tensor};

/// ViT hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitSpec {
    /// Input shape [C, H, W] (H and W multiples of `patch`).
    pub input: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Square patch size.
    pub patch: usize,
    /// Token width D.
    pub dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads (D must be a multiple).
    pub heads: usize,
    /// Hidden width of the MLP.
    pub mlp_dim: usize,
    /// Layer-norm ε.
    #[serde(default = "ln_eps")]
    pub ln_eps: f32,
}

fn ln_eps() -> f32 {
    1e-6
}

impl VitSpec {
    /// Number of tokens (patches + class token).
    pub fn tokens(&self) -> usize {
        (self.input[1] / self.patch.max(1)) * (self.input[2] / self.patch.max(1)) + 1
    }

    /// Check the spec; returns the named parameter shapes in order.
    pub fn shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let [c, h, w] = self.input;
        let bad = |m: String| Err(Error::param("vit", m));
        if c == 0 || h == 0 || w == 0 || self.classes == 0 {
            return bad(format!(
                "input {:?} and classes {} must be positive",
                self.input, self.classes
            ));
        }
        if self.patch == 0 || h % self.patch != 0 || w % self.patch != 0 {
            return bad(format!(
                "patch {} must divide the image size {h}x{w}",
                self.patch
            ));
        }
        if self.dim == 0
            || self.heads == 0
            || !self.dim.is_multiple_of(self.heads)
            || self.mlp_dim == 0
        {
            return bad(format!(
                "dim {} must be a positive multiple of heads {} and mlp_dim {} positive",
                self.dim, self.heads, self.mlp_dim
            ));
        }
        if self.ln_eps.is_nan() || self.ln_eps <= 0.0 {
            return bad(format!("ln_eps must be > 0, got {}", self.ln_eps));
        }
        let (d, m, p) = (self.dim, self.mlp_dim, self.patch);
        if (h / p)
            .checked_mul(w / p)
            .and_then(|t| t.checked_add(1))
            .is_none()
        {
            return bad(format!(
                "{}x{} patches of {h}x{w} are too many",
                h / p,
                w / p
            ));
        }
        let mut s: Vec<(String, Vec<usize>)> = vec![
            ("patch_embed.weight".into(), vec![d, c, p, p]),
            ("patch_embed.bias".into(), vec![d]),
            ("cls_token".into(), vec![1, 1, d]),
            ("pos_embed".into(), vec![1, self.tokens(), d]),
        ];
        for i in 0..self.depth {
            let b = format!("blocks.{i}");
            s.push((format!("{b}.norm1.weight"), vec![d]));
            s.push((format!("{b}.norm1.bias"), vec![d]));
            for q in ["q", "k", "v", "proj"] {
                s.push((format!("{b}.attn.{q}.weight"), vec![d, d]));
                s.push((format!("{b}.attn.{q}.bias"), vec![d]));
            }
            s.push((format!("{b}.norm2.weight"), vec![d]));
            s.push((format!("{b}.norm2.bias"), vec![d]));
            s.push((format!("{b}.mlp.fc1.weight"), vec![m, d]));
            s.push((format!("{b}.mlp.fc1.bias"), vec![m]));
            s.push((format!("{b}.mlp.fc2.weight"), vec![d, m]));
            s.push((format!("{b}.mlp.fc2.bias"), vec![d]));
        }
        s.push(("norm.weight".into(), vec![d]));
        s.push(("norm.bias".into(), vec![d]));
        s.push(("head.weight".into(), vec![self.classes, d]));
        s.push(("head.bias".into(), vec![self.classes]));
        crate::spec::check_param_count("vit", s.iter().map(|p| p.1.as_slice()))?;
        Ok(s)
    }

    /// Initial parameters (timm-like): linear weights, class token and position embeddings
    /// N(0, 0.02²); the patch embedding U(±1/√fan_in) as PyTorch's conv default; biases 0; layer
    /// norms γ = 1, β = 0. Each tensor draws from `stream.child(name)`.
    pub fn init(&self, stream: &Stream) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .shapes()?
            .into_iter()
            .map(|(name, shape)| {
                let s = stream.child(&name);
                let t = if name == "patch_embed.weight" || name == "patch_embed.bias" {
                    let fan_in = self.input[0] * self.patch * self.patch;
                    super::uniform(&shape, 1.0 / (fan_in as f32).sqrt(), &s)
                } else if name.contains("norm") && name.ends_with("weight") {
                    Tensor::from_elem(ndarray::IxDyn(&shape), 1.0)
                } else if name.ends_with("bias") {
                    Tensor::zeros(ndarray::IxDyn(&shape))
                } else {
                    let n: usize = shape.iter().product();
                    let mut v = vec![0.0f32; n];
                    s.fill_normal(0, &mut v);
                    v.iter_mut().for_each(|e| *e *= 0.02);
                    sim::tensor(&shape, v).expect("sizes agree")
                };
                (name, t)
            })
            .collect())
    }

    /// Forward pass on `t` from normalized input `x` `[N, C, H, W]` with parameter vars `p` (in the
    /// order of [`shapes`](Self::shapes)); returns the logits `[N, classes]`.
    pub fn forward<B: Backend>(&self, t: &Tape<'_, B>, x: Var, p: &[Var]) -> Result<Var> {
        let be = t.backend();
        let xs = t.shape(x)?;
        if xs.len() != 4 || xs[1..] != self.input[..] {
            return Err(Error::shape(
                "vit",
                format!("expected input [N, {:?}], got {xs:?}", self.input),
            ));
        }
        let (n, d, tk) = (xs[0], self.dim, self.tokens());
        let (hd, nh) = (self.dim / self.heads, self.heads);
        // Patch embedding → [N, P, D].
        let pe = t.conv2d(x, p[0], Some(p[1]), Conv2dParams::new(self.patch, 0))?;
        let pe = t.permute(t.reshape(pe, &[n, d, tk - 1])?, &[0, 2, 1])?;
        // Broadcast over the batch by a product with a column of ones: [N,1]·[1,K].
        let ones = t.constant(be.full(&[n, 1], 1.0)?);
        let cls = t.matmul(ones, t.reshape(p[2], &[1, d])?, false, false)?;
        let cls = t.reshape(cls, &[n, 1, d])?;
        let pos = t.matmul(ones, t.reshape(p[3], &[1, tk * d])?, false, false)?;
        let mut h = t.add(t.concat(&[cls, pe], 1)?, t.reshape(pos, &[n, tk, d])?)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let heads =
            |v: Var| -> Result<Var> { t.permute(t.reshape(v, &[n, tk, nh, hd])?, &[0, 2, 1, 3]) };
        for i in 0..self.depth {
            let q = &p[4 + 16 * i..4 + 16 * (i + 1)];
            let y = t.layer_norm(h, q[0], q[1], self.ln_eps)?;
            let qh = heads(t.linear(y, q[2], Some(q[3]))?)?;
            let kh = heads(t.linear(y, q[4], Some(q[5]))?)?;
            let vh = heads(t.linear(y, q[6], Some(q[7]))?)?;
            let att = t.softmax(t.scale(t.matmul(qh, kh, false, true)?, scale)?)?;
            let o = t.matmul(att, vh, false, false)?; // [N, H, T, hd]
            let o = t.reshape(t.permute(o, &[0, 2, 1, 3])?, &[n, tk, d])?;
            h = t.add(h, t.linear(o, q[8], Some(q[9]))?)?;
            let y = t.layer_norm(h, q[10], q[11], self.ln_eps)?;
            let m = t.map(t.linear(y, q[12], Some(q[13]))?, Act::Gelu)?;
            h = t.add(h, t.linear(m, q[14], Some(q[15]))?)?;
        }
        let k = 4 + 16 * self.depth;
        let h = t.layer_norm(h, p[k], p[k + 1], self.ln_eps)?;
        let c = t.reshape(t.slice(h, 1, 0, 1)?, &[n, d])?;
        t.linear(c, p[k + 2], Some(p[k + 3]))
    }
}
