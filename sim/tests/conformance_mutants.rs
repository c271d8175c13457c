//! Every case of the conformance suite can fail, and every op is checked: run on a backend that
//! is the CPU with one op broken (its values scaled by 1.01 and shifted by 0.01 and its errors
//! replaced by `Error::Other`, or every call refused), each case fails for some op it uses, and
//! each op's wrong values fail some case.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use sim::analog::{Prepared, ReadKind, ReadPlan, Tally};
use sim::backend::OptimOut;
use sim::cpu::IndexTensor;
use sim::{
    Act, Backend, Conv2dParams, Cpu, Error, OptimStep, Pool2dParams, Pooling, Result, Stream,
    Tensor,
};

/// How the broken op is broken.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Values scaled by 1.01 and shifted by 0.01; errors replaced by `Error::Other`.
    Bend,
    /// Every call refused with `Error::Other` (an op a backend lacks or fails on).
    Refuse,
}

/// The CPU with op `broken` broken; records the ops it runs.
struct Mutant {
    broken: Option<(&'static str, Kind)>,
    used: Mutex<BTreeSet<&'static str>>,
}

fn bend(v: f32) -> f32 {
    v * 1.01 + 0.01
}

fn bend_t(t: Tensor) -> Tensor {
    t.mapv(bend)
}

impl Mutant {
    fn new(broken: Option<(&'static str, Kind)>) -> Self {
        Mutant {
            broken,
            used: Mutex::new(BTreeSet::new()),
        }
    }
    /// Record `op`; if it is the broken one, break `r` with `f`.
    fn hit<T>(&self, op: &'static str, r: Result<T>, f: impl FnOnce(T) -> T) -> Result<T> {
        self.used.lock().unwrap().insert(op);
        match (self.broken, r) {
            (Some((o, Kind::Refuse)), _) if o == op => Err(Error::Other(format!("{op}: refused"))),
            (Some((o, Kind::Bend)), Ok(v)) if o == op => Ok(f(v)),
            (Some((o, Kind::Bend)), Err(_)) if o == op => Err(Error::Other(format!("{op}: bent"))),
            (_, r) => r,
        }
    }
}

macro_rules! t {
    ($s:ident, $op:literal, $e:expr) => {
        $s.hit($op, $e, bend_t)
    };
}

impl Backend for Mutant {
    type Tensor = Tensor;
    type Index = IndexTensor;
    fn name(&self) -> String {
        format!("cpu with {:?} broken", self.broken)
    }
    fn upload(&self, t: &Tensor) -> Result<Tensor> {
        t!(self, "upload", Cpu.upload(t))
    }
    fn download(&self, t: &Tensor) -> Result<Tensor> {
        t!(self, "download", Cpu.download(t))
    }
    fn upload_owned(&self, t: Tensor) -> Result<Tensor> {
        t!(self, "upload_owned", Cpu.upload_owned(t))
    }
    fn host<'a>(&self, t: &'a Tensor) -> Result<std::borrow::Cow<'a, Tensor>> {
        self.hit("host", Cpu.host(t), |c| {
            std::borrow::Cow::Owned(bend_t(c.into_owned()))
        })
    }
    fn shape(&self, t: &Tensor) -> Vec<usize> {
        Cpu.shape(t)
    }
    fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        t!(self, "zeros", Cpu.zeros(shape))
    }
    fn full(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        t!(self, "full", Cpu.full(shape, value))
    }
    fn reshape(&self, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
        t!(self, "reshape", Cpu.reshape(t, shape))
    }
    fn permute(&self, t: &Tensor, axes: &[usize]) -> Result<Tensor> {
        t!(self, "permute", Cpu.permute(t, axes))
    }
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        t!(self, "concat", Cpu.concat(xs, axis))
    }
    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        t!(self, "slice", Cpu.slice(x, axis, start, len))
    }
    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        p: Conv2dParams,
    ) -> Result<Tensor> {
        t!(self, "conv2d", Cpu.conv2d(x, w, b, p))
    }
    fn conv2d_input_grad(
        &self,
        gy: &Tensor,
        w: &Tensor,
        hw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<Tensor> {
        t!(
            self,
            "conv2d_input_grad",
            Cpu.conv2d_input_grad(gy, w, hw, p)
        )
    }
    fn conv2d_weight_grad(
        &self,
        x: &Tensor,
        gy: &Tensor,
        khw: (usize, usize),
        p: Conv2dParams,
    ) -> Result<Tensor> {
        t!(
            self,
            "conv2d_weight_grad",
            Cpu.conv2d_weight_grad(x, gy, khw, p)
        )
    }
    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        t!(self, "linear", Cpu.linear(x, w, b))
    }
    fn linear_input_grad(&self, gy: &Tensor, w: &Tensor) -> Result<Tensor> {
        t!(self, "linear_input_grad", Cpu.linear_input_grad(gy, w))
    }
    fn linear_weight_grad(&self, x: &Tensor, gy: &Tensor) -> Result<Tensor> {
        t!(self, "linear_weight_grad", Cpu.linear_weight_grad(x, gy))
    }
    fn matmul(&self, a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> Result<Tensor> {
        t!(self, "matmul", Cpu.matmul(a, b, ta, tb))
    }
    fn max_pool2d(&self, x: &Tensor, p: Pool2dParams) -> Result<(Tensor, IndexTensor)> {
        self.hit("max_pool2d", Cpu.max_pool2d(x, p), |(y, i)| (bend_t(y), i))
    }
    fn max_unpool2d(&self, y: &Tensor, idx: &IndexTensor, hw: (usize, usize)) -> Result<Tensor> {
        t!(self, "max_unpool2d", Cpu.max_unpool2d(y, idx, hw))
    }
    fn pool_gather(&self, x: &Tensor, idx: &IndexTensor) -> Result<Tensor> {
        t!(self, "pool_gather", Cpu.pool_gather(x, idx))
    }
    fn avg_pool2d(&self, x: &Tensor, p: Pool2dParams) -> Result<Tensor> {
        t!(self, "avg_pool2d", Cpu.avg_pool2d(x, p))
    }
    fn avg_pool2d_adjoint(
        &self,
        gy: &Tensor,
        hw: (usize, usize),
        p: Pool2dParams,
    ) -> Result<Tensor> {
        t!(
            self,
            "avg_pool2d_adjoint",
            Cpu.avg_pool2d_adjoint(gy, hw, p)
        )
    }
    fn map(&self, x: &Tensor, act: Act) -> Result<Tensor> {
        t!(self, "map", Cpu.map(x, act))
    }
    fn map_grad(&self, x: &Tensor, gy: &Tensor, act: Act) -> Result<Tensor> {
        t!(self, "map_grad", Cpu.map_grad(x, gy, act))
    }
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t!(self, "add", Cpu.add(a, b))
    }
    fn sub(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t!(self, "sub", Cpu.sub(a, b))
    }
    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        t!(self, "mul", Cpu.mul(a, b))
    }
    fn scale(&self, x: &Tensor, alpha: f32) -> Result<Tensor> {
        t!(self, "scale", Cpu.scale(x, alpha))
    }
    fn axpy(&self, alpha: f32, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        t!(self, "axpy", Cpu.axpy(alpha, x, y))
    }
    fn add_along(&self, x: &Tensor, b: &Tensor, axis: usize) -> Result<Tensor> {
        t!(self, "add_along", Cpu.add_along(x, b, axis))
    }
    fn sum_all(&self, x: &Tensor) -> Result<f32> {
        self.hit("sum_all", Cpu.sum_all(x), bend)
    }
    fn dot(&self, a: &Tensor, b: &Tensor) -> Result<f32> {
        self.hit("dot", Cpu.dot(a, b), bend)
    }
    fn sum_except(&self, x: &Tensor, axis: usize) -> Result<Tensor> {
        t!(self, "sum_except", Cpu.sum_except(x, axis))
    }
    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        t!(self, "softmax", Cpu.softmax(x))
    }
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        t!(self, "log_softmax", Cpu.log_softmax(x))
    }
    fn log_softmax_grad(&self, y: &Tensor, gy: &Tensor) -> Result<Tensor> {
        t!(self, "log_softmax_grad", Cpu.log_softmax_grad(y, gy))
    }
    fn cross_entropy(&self, logits: &Tensor, labels: &[usize]) -> Result<(f32, Tensor)> {
        self.hit(
            "cross_entropy",
            Cpu.cross_entropy(logits, labels),
            |(l, g)| (bend(l), bend_t(g)),
        )
    }
    fn layer_norm(
        &self,
        x: &Tensor,
        g: &Tensor,
        b: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.hit("layer_norm", Cpu.layer_norm(x, g, b, eps), |(y, m, r)| {
            (bend_t(y), bend_t(m), bend_t(r))
        })
    }
    fn layer_norm_grad(
        &self,
        x: &Tensor,
        g: &Tensor,
        m: &Tensor,
        r: &Tensor,
        gy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.hit(
            "layer_norm_grad",
            Cpu.layer_norm_grad(x, g, m, r, gy),
            |(a, b, c)| (bend_t(a), bend_t(b), bend_t(c)),
        )
    }
    fn batch_norm_train(
        &self,
        x: &Tensor,
        g: &Tensor,
        b: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.hit(
            "batch_norm_train",
            Cpu.batch_norm_train(x, g, b, eps),
            |(y, m, v)| (bend_t(y), bend_t(m), bend_t(v)),
        )
    }
    fn batch_norm_eval(
        &self,
        x: &Tensor,
        g: &Tensor,
        b: &Tensor,
        m: &Tensor,
        v: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        t!(
            self,
            "batch_norm_eval",
            Cpu.batch_norm_eval(x, g, b, m, v, eps)
        )
    }
    fn batch_norm_grad(
        &self,
        x: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
        eps: f32,
        gy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.hit(
            "batch_norm_grad",
            Cpu.batch_norm_grad(x, g, m, v, eps, gy),
            |(a, b, c)| (bend_t(a), bend_t(b), bend_t(c)),
        )
    }
    fn conv2d_pooled(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        p: Conv2dParams,
        pool: Pooling,
    ) -> Result<(Tensor, Option<IndexTensor>)> {
        self.hit(
            "conv2d_pooled",
            Cpu.conv2d_pooled(x, w, b, p, pool),
            |(y, i)| (bend_t(y), i),
        )
    }
    fn conv2d_pooled_input_grad(
        &self,
        v: &Tensor,
        idx: Option<&IndexTensor>,
        w: &Tensor,
        conv_hw: (usize, usize),
        input_hw: (usize, usize),
        p: Conv2dParams,
        pool: Pooling,
    ) -> Result<Tensor> {
        t!(
            self,
            "conv2d_pooled_input_grad",
            Cpu.conv2d_pooled_input_grad(v, idx, w, conv_hw, input_hw, p, pool)
        )
    }
    fn optim_update(
        &self,
        p: &Tensor,
        g: &Tensor,
        buf1: Option<&Tensor>,
        buf2: Option<&Tensor>,
        step: OptimStep,
    ) -> Result<OptimOut<Tensor>> {
        self.hit(
            "optim_update",
            Cpu.optim_update(p, g, buf1, buf2, step),
            |(p, b1, b2)| (bend_t(p), b1, b2),
        )
    }
    fn randn(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<Tensor> {
        t!(self, "randn", Cpu.randn(shape, stream, offset))
    }
    fn rand(&self, shape: &[usize], stream: &Stream, offset: u64) -> Result<Tensor> {
        t!(self, "rand", Cpu.rand(shape, stream, offset))
    }
    fn xbar_read(
        &self,
        plan: &ReadPlan,
        x: &Tensor,
        kind: ReadKind,
        wmax: f32,
        bias: Option<&Tensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(Tensor, Tally)> {
        self.hit(
            "xbar_read",
            Cpu.xbar_read(plan, x, kind, wmax, bias, s, t),
            |(y, tally)| (bend_t(y), tally),
        )
    }
    fn xbar_prepare(
        &self,
        plan: &ReadPlan,
        x: &Tensor,
        kind: ReadKind,
        s: &Stream,
    ) -> Result<Option<Prepared>> {
        self.hit("xbar_prepare", Cpu.xbar_prepare(plan, x, kind, s), |p| p)
    }
    fn xbar_read_prepared(
        &self,
        plan: &ReadPlan,
        prepared: &Prepared,
        wmax: f32,
        bias: Option<&Tensor>,
        s: &Stream,
        t: u64,
    ) -> Result<(Tensor, Tally)> {
        self.hit(
            "xbar_read_prepared",
            Cpu.xbar_read_prepared(plan, prepared, wmax, bias, s, t),
            |(y, tally)| (bend_t(y), tally),
        )
    }
}

/// Every op of the `Backend` trait that returns data (all but `name` and `shape`).
const OPS: &[&str] = &[
    "upload",
    "download",
    "upload_owned",
    "host",
    "zeros",
    "full",
    "reshape",
    "permute",
    "concat",
    "slice",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "linear",
    "linear_input_grad",
    "linear_weight_grad",
    "matmul",
    "max_pool2d",
    "max_unpool2d",
    "pool_gather",
    "avg_pool2d",
    "avg_pool2d_adjoint",
    "map",
    "map_grad",
    "add",
    "sub",
    "mul",
    "scale",
    "axpy",
    "add_along",
    "sum_all",
    "dot",
    "sum_except",
    "softmax",
    "log_softmax",
    "log_softmax_grad",
    "cross_entropy",
    "layer_norm",
    "layer_norm_grad",
    "batch_norm_train",
    "batch_norm_eval",
    "batch_norm_grad",
    "randn",
    "rand",
    "conv2d_pooled",
    "conv2d_pooled_input_grad",
    "optim_update",
    "xbar_read",
    "xbar_read_prepared",
    // Not `xbar_prepare`: its result is opaque to the suite (only `xbar_read_prepared` reads it),
    // so it has no values to bend; a refused one fails the cases that prepare.
];

#[test]
fn every_case_can_fail_and_every_op_is_checked() {
    let cases = sim::conformance_cases!(Mutant);
    assert_eq!(cases.len(), sim::conformance::CASES.len());
    // Silence the expected panics (MUTANT_DEBUG=1 shows them); this is the binary's only test.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if std::env::var_os("MUTANT_DEBUG").is_some() {
            eprintln!("{info}");
        }
    }));
    let fails = |case: fn(&Mutant), op: &'static str, kind: Kind| {
        std::panic::catch_unwind(|| case(&Mutant::new(Some((op, kind))))).is_err()
    };
    // The ops each case runs, on the intact backend (where every case passes).
    let mut used: BTreeMap<&str, BTreeSet<&'static str>> = BTreeMap::new();
    let mut intact_failures = Vec::new();
    for &(name, case) in &cases {
        let m = Mutant::new(None);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&m))).is_err() {
            intact_failures.push(name);
        }
        used.insert(name, m.used.into_inner().unwrap());
    }
    // Each case fails when one of its ops has wrong values (tried rarest op first, so the op the
    // case is about comes first), or, for the cases about shapes and errors alone, is refused.
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for ops in used.values() {
        for op in ops {
            *count.entry(op).or_default() += 1;
        }
    }
    let mut caught: BTreeSet<&str> = BTreeSet::new();
    let (mut only_refusals, mut never) = (Vec::new(), Vec::new());
    for &(name, case) in &cases {
        let mut ops: Vec<&'static str> = used[name].iter().copied().collect();
        ops.sort_by_key(|op| count[op]);
        if let Some(op) = ops.iter().find(|&&op| fails(case, op, Kind::Bend)) {
            caught.insert(op);
        } else if ops.iter().any(|&op| fails(case, op, Kind::Refuse)) {
            only_refusals.push(name);
        } else {
            never.push(name);
        }
    }
    // Each op's wrong values fail some case.
    let mut unchecked = Vec::new();
    for &op in OPS {
        let hit = caught.contains(op)
            || cases
                .iter()
                .filter(|(name, _)| used[name].contains(op))
                .any(|&(_, case)| fails(case, op, Kind::Bend));
        if !hit {
            unchecked.push(op);
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "cases failing only when an op is refused (about shapes and errors): {only_refusals:?}"
    );
    assert!(
        intact_failures.is_empty(),
        "cases failing on the intact CPU: {intact_failures:?}"
    );
    assert!(
        never.is_empty(),
        "cases passing with any of their ops broken: {never:?}"
    );
    assert!(
        unchecked.is_empty(),
        "ops whose wrong values no case catches: {unchecked:?}"
    );
}
