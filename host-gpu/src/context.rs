//! The wgpu device behind the backend: adapter choice (with a clear error when there is none),
//! compiled pipelines (cached per shader variant and entry point), a pool of storage buffers,
//! batched command recording (one submit per many dispatches) and read-back.
//!
//! Every kernel follows one binding convention: `@binding(0)` is a read-only `array<u32>` of
//! parameters (f32 values bit-cast), the operands follow at the binding numbers the caller names.
//! The parameters of a batch of dispatches share one buffer, a [`PARAM_SLOT`]-byte slot each,
//! written once just before the batch is submitted (not one buffer per dispatch).
//! Dispatches are recorded in order into one compute pass of one pending encoder; wgpu orders
//! the dispatches of a pass (each is a usage scope of its own), so a buffer written by one
//! dispatch is visible to the next. The pending work is submitted every
//! [`MAX_PENDING`] dispatches and before any read-back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sim::{Error, Result};
use wgpu::util::DeviceExt;

/// Dispatches recorded before the pending encoder is submitted.
const MAX_PENDING: usize = 256;
/// Bytes of parameter words one dispatch may keep in the batch's shared parameter buffer (the
/// offsets are multiples of it, and every device's storage offset alignment is at most 256);
/// dispatches with more words get a buffer of their own.
const PARAM_SLOT: usize = 256;
/// Bytes kept in the buffer pool at most (buffers beyond it are freed when released).
const POOL_CAP_BYTES: u64 = 4 << 30;
/// Invocations per workgroup of the 1-D element kernels (every `.wgsl` element kernel uses it).
pub(crate) const WG: u32 = 256;

/// How a buffer is bound to a kernel.
pub(crate) enum Bind<'a> {
    /// Read-only storage at a binding number.
    R(u32, &'a wgpu::Buffer),
    /// Read-write storage at a binding number.
    W(u32, &'a wgpu::Buffer),
}

struct Pending {
    /// The open compute pass of `encoder` that dispatches are recorded into (ended before the
    /// encoder records anything else or is submitted; declared first, so it drops first).
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    count: usize,
    /// The batch's parameter words, one [`PARAM_SLOT`] per dispatch, uploaded to `params_buf`
    /// just before the batch is submitted.
    params: Vec<u8>,
    params_buf: Option<wgpu::Buffer>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            pass: None,
            encoder: None,
            count: 0,
            params: Vec::new(),
            params_buf: None,
        }
    }
}

/// The device, its queue and the caches. Shared by every tensor of the backend.
pub(crate) struct Ctx {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<String, Arc<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>>>,
    pool: Mutex<(HashMap<u64, Vec<wgpu::Buffer>>, u64)>,
    pending: Mutex<Pending>,
    /// Kernel launches recorded since the device was opened (for benchmarks).
    launches: AtomicU64,
}

/// What names one kind of data derived from a buffer's contents ([`PoolBuf::derived`]): the
/// kind and the words that fix its layout.
pub(crate) type DerivedKey = (&'static str, [u32; 4]);

/// A pooled storage buffer: released to the pool when the last tensor holding it drops.
pub(crate) struct PoolBuf {
    pub(crate) buf: Option<wgpu::Buffer>,
    pub(crate) ctx: Arc<Ctx>,
    /// Buffers computed from this one's contents, kept for its life ([`PoolBuf::derived`]).
    derived: Mutex<Vec<(DerivedKey, Arc<PoolBuf>)>>,
}

impl PoolBuf {
    fn new(buf: wgpu::Buffer, ctx: Arc<Ctx>) -> PoolBuf {
        PoolBuf {
            buf: Some(buf),
            ctx,
            derived: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buf.as_ref().expect("buffer present until drop")
    }

    /// The buffer derived from this one's contents under `key` (such as a convolution's
    /// transformed weights): `make` runs on the first request only, later ones share its result.
    /// Sound because a tensor's buffer is written only by the op that creates it (every op writes
    /// a fresh output, `tensor.rs`), before any op can read it; the derived buffer lives as long
    /// as this one (a pooled buffer that comes back for a new tensor gets a new `PoolBuf`, with
    /// nothing derived). Two threads asking at once may both compute it; both results are equal.
    pub(crate) fn derived(
        &self,
        key: DerivedKey,
        make: impl FnOnce() -> Result<Arc<PoolBuf>>,
    ) -> Result<Arc<PoolBuf>> {
        let found = |d: &Vec<(DerivedKey, Arc<PoolBuf>)>| {
            d.iter().find(|(k, _)| *k == key).map(|(_, b)| b.clone())
        };
        if let Some(b) = found(&self.derived.lock().expect("derived lock")) {
            return Ok(b);
        }
        // Not under the lock: `make` records work, which may flush and wait.
        let b = make()?;
        let mut d = self.derived.lock().expect("derived lock");
        Ok(found(&d).unwrap_or_else(|| {
            d.push((key, b.clone()));
            b
        }))
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.ctx.release(b);
        }
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolBuf({} bytes)", self.buffer().size())
    }
}

/// Round a byte size up to the pool's size classes (multiples of 256 bytes, at least 16).
fn size_class(bytes: u64) -> u64 {
    bytes.max(16).div_ceil(256) * 256
}

/// The message for a machine where wgpu finds no adapter.
fn no_adapter_message(detail: &str) -> String {
    format!(
        "no GPU adapter found (wgpu tried the Vulkan backend: {detail}). Install a Vulkan driver: \
         on Debian/Ubuntu `apt-get install mesa-vulkan-drivers libvulkan1` gives Mesa's software \
         driver (lavapipe, what the tests use; `bash scripts/system-deps.sh` installs it), and on a \
         machine with an NVIDIA GPU the vendor driver's Vulkan ICD (e.g. `libnvidia-gl-*` with \
         `/usr/share/vulkan/icd.d/nvidia_icd.json`). `vulkaninfo --summary` (package vulkan-tools) \
         lists what the loader sees. Or run on the CPU with `--device cpu`."
    )
}

impl Ctx {
    /// Open adapter number `ordinal` (in wgpu's enumeration order, discrete GPUs first) or the
    /// first one.
    pub(crate) fn open(ordinal: Option<usize>) -> Result<Arc<Ctx>> {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            // Mesa prints a warning per device otherwise; the value is not used for compute.
            // SAFETY: set before any thread of ours reads the environment (backend creation).
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(desc);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN));
        if adapters.is_empty() {
            return Err(Error::Other(no_adapter_message(
                "the loader returned no Vulkan device",
            )));
        }
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => 4,
        };
        adapters.sort_by_key(rank);
        let names: Vec<String> = adapters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("gpu:{i} = {}", a.get_info().name))
            .collect();
        let i = ordinal.unwrap_or(0);
        let Some(adapter) = adapters.into_iter().nth(i) else {
            return Err(Error::Other(format!(
                "--device gpu:{i}: no such adapter (found {})",
                names.join(", ")
            )));
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("epsim"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Other(format!("GPU {}: could not open the device: {e}", info.name)))?;
        Ok(Arc::new(Ctx {
            device,
            queue,
            info,
            limits,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new((HashMap::new(), 0)),
            pending: Mutex::new(Pending::new()),
            launches: AtomicU64::new(0),
        }))
    }

    /// A storage buffer of at least `bytes` bytes from the pool (contents undefined).
    pub(crate) fn alloc(self: &Arc<Self>, bytes: u64) -> Result<PoolBuf> {
        let size = size_class(bytes);
        if size > self.limits.max_storage_buffer_binding_size || size > self.limits.max_buffer_size
        {
            return Err(Error::Other(format!(
                "GPU {}: a tensor of {bytes} bytes exceeds the device's largest storage binding ({} bytes); use a smaller batch",
                self.info.name,
                self.limits
                    .max_storage_buffer_binding_size
                    .min(self.limits.max_buffer_size)
            )));
        }
        let reused = {
            let mut pool = self.pool.lock().expect("pool lock");
            let b = pool.0.get_mut(&size).and_then(|v| v.pop());
            if b.is_some() {
                pool.1 -= size;
            }
            b
        };
        let buf = reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Ok(PoolBuf::new(buf, self.clone()))
    }

    /// A storage buffer holding `data` (a fresh buffer: never one still used by pending work).
    pub(crate) fn alloc_init(self: &Arc<Self>, data: &[u8]) -> Result<PoolBuf> {
        let size = size_class(data.len() as u64);
        if size > self.limits.max_storage_buffer_binding_size {
            return Err(Error::Other(format!(
                "GPU {}: a tensor of {} bytes exceeds the device's largest storage binding ({} bytes); use a smaller batch",
                self.info.name,
                data.len(),
                self.limits.max_storage_buffer_binding_size
            )));
        }
        let mut padded = Vec::with_capacity(size as usize);
        padded.extend_from_slice(data);
        padded.resize(size as usize, 0);
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &padded,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            });
        Ok(PoolBuf::new(buf, self.clone()))
    }

    fn release(&self, buf: wgpu::Buffer) {
        let size = buf.size();
        let mut pool = self.pool.lock().expect("pool lock");
        if pool.1 + size <= POOL_CAP_BYTES {
            pool.1 += size;
            pool.0.entry(size).or_default().push(buf);
        }
    }

    /// The compiled pipeline for `entry` of the shader `name` (source built by `source` on first
    /// use), with the layout of `binds` (params at 0, then the given bindings).
    fn pipeline(
        &self,
        name: &str,
        source: &dyn Fn() -> String,
        entry: &str,
        binds: &[Bind<'_>],
    ) -> Result<Arc<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>> {
        let mut sig = format!("{name}::{entry}:");
        for b in binds {
            match b {
                Bind::R(i, _) => sig.push_str(&format!("r{i}")),
                Bind::W(i, _) => sig.push_str(&format!("w{i}")),
            }
        }
        if let Some(p) = self.pipelines.lock().expect("pipeline lock").get(&sig) {
            return Ok(p.clone());
        }
        let module = {
            let mut m = self.modules.lock().expect("module lock");
            if let Some(m) = m.get(name) {
                m.clone()
            } else {
                let src = source();
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(name),
                        source: wgpu::ShaderSource::Wgsl(src.into()),
                    });
                if let Some(e) = pollster::block_on(scope.pop()) {
                    return Err(Error::Other(format!("GPU shader {name}: {e}")));
                }
                let module = Arc::new(module);
                m.insert(name.to_string(), module.clone());
                module
            }
        };
        let storage = |ro: bool| wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only: ro },
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: storage(true),
            count: None,
        }];
        for b in binds {
            let (i, ro) = match b {
                Bind::R(i, _) => (*i, true),
                Bind::W(i, _) => (*i, false),
            };
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: storage(ro),
                count: None,
            });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bgl = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            });
        let layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Other(format!("GPU pipeline {name}::{entry}: {e}")));
        }
        let p = Arc::new((pipeline, bgl));
        self.pipelines
            .lock()
            .expect("pipeline lock")
            .insert(sig, p.clone());
        Ok(p)
    }

    /// Record one dispatch of `entry` in shader `name` with parameter words `params`, the
    /// bindings `binds` and `groups` workgroups.
    pub(crate) fn dispatch(
        &self,
        name: &str,
        source: &dyn Fn() -> String,
        entry: &str,
        params: &[u32],
        binds: &[Bind<'_>],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Other(format!(
                "GPU {name}::{entry}: grid {groups:?} exceeds the device's {max} workgroups per dimension"
            )));
        }
        let p = self.pipeline(name, source, entry, binds)?;
        let mut words = params.to_vec();
        if words.is_empty() {
            words.push(0);
        }
        let bytes: &[u8] = bytemuck::cast_slice(&words);
        // Submitted under the lock: another thread's later work must not be submitted first, and
        // the batch's parameter slots are taken in recording order.
        let mut pending = self.pending.lock().expect("pending lock");
        let own;
        let param = if bytes.len() <= PARAM_SLOT {
            let offset = pending.params.len().next_multiple_of(PARAM_SLOT);
            pending.params.resize(offset, 0);
            pending.params.extend_from_slice(bytes);
            let buf = pending.params_buf.get_or_insert_with(|| {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("params"),
                    size: (MAX_PENDING * PARAM_SLOT) as u64,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: buf,
                offset: offset as u64,
                size: wgpu::BufferSize::new(bytes.len() as u64),
            })
        } else {
            own = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytes,
                    usage: wgpu::BufferUsages::STORAGE,
                });
            own.as_entire_binding()
        };
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: param,
        }];
        for b in binds {
            let (i, buf) = match b {
                Bind::R(i, b) | Bind::W(i, b) => (*i, *b),
            };
            entries.push(wgpu::BindGroupEntry {
                binding: i,
                resource: buf.as_entire_binding(),
            });
        }
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.1,
            entries: &entries,
        });
        let pass = self.pass(&mut pending);
        pass.set_pipeline(&p.0);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        pending.count += 1;
        self.launches.fetch_add(1, Ordering::Relaxed);
        if pending.count >= MAX_PENDING {
            self.submit(&mut pending);
        }
        Ok(())
    }

    /// The pending encoder (a new one after a submission).
    fn encoder<'p>(&self, pending: &'p mut Pending) -> &'p mut wgpu::CommandEncoder {
        pending.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        })
    }

    /// The open compute pass, begun on the pending encoder if none is open. Consecutive dispatches
    /// share one pass (beginning and ending a pass per dispatch costs the host); wgpu still
    /// orders them and makes each dispatch's writes visible to the next, since every dispatch of
    /// a compute pass is a usage scope of its own.
    fn pass<'p>(&self, pending: &'p mut Pending) -> &'p mut wgpu::ComputePass<'static> {
        if pending.pass.is_none() {
            let pass = self
                .encoder(pending)
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                })
                .forget_lifetime();
            pending.pass = Some(pass);
        }
        pending.pass.as_mut().expect("a pass was just begun")
    }

    /// Submit the batch: its parameter words first (wgpu applies a buffer write before the
    /// commands of the next submission), then its commands. Called with the pending lock held.
    fn submit(&self, pending: &mut Pending) {
        pending.count = 0;
        pending.pass = None;
        if let Some(buf) = pending.params_buf.take() {
            self.queue.write_buffer(&buf, 0, &pending.params);
        }
        pending.params.clear();
        if let Some(enc) = pending.encoder.take() {
            self.queue.submit([enc.finish()]);
        }
    }

    /// Kernel launches recorded since the device was opened.
    pub(crate) fn launches(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }

    /// Record a buffer-to-buffer copy in the pending encoder.
    pub(crate) fn copy(
        &self,
        src: &wgpu::Buffer,
        src_off: u64,
        dst: &wgpu::Buffer,
        dst_off: u64,
        bytes: u64,
    ) {
        if bytes == 0 {
            return;
        }
        let mut pending = self.pending.lock().expect("pending lock");
        // A copy is recorded on the encoder itself: end the open compute pass first.
        pending.pass = None;
        self.encoder(&mut pending)
            .copy_buffer_to_buffer(src, src_off, dst, dst_off, bytes);
        pending.count += 1;
    }

    /// Submit the recorded work.
    pub(crate) fn flush(&self) {
        // Submitted under the lock, so command buffers reach the queue in recording order even
        // when several threads record and flush.
        let mut pending = self.pending.lock().expect("pending lock");
        self.submit(&mut pending);
    }

    /// Wait for all submitted work.
    pub(crate) fn sync(&self) -> Result<()> {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Other(format!("GPU {}: {e}", self.info.name)))?;
        Ok(())
    }

    /// Read the first `bytes` bytes of `buf` back to the host (submits the pending work).
    pub(crate) fn read(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let padded = bytes.div_ceil(wgpu::COPY_BUFFER_ALIGNMENT) * wgpu::COPY_BUFFER_ALIGNMENT;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy(buf, 0, &staging, 0, padded);
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Other(format!("GPU {}: {e}", self.info.name)))?;
        rx.recv()
            .map_err(|e| Error::Other(format!("GPU read-back: {e}")))?
            .map_err(|e| Error::Other(format!("GPU read-back: {e}")))?;
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Other(format!("GPU read-back: {e}")))?[..bytes as usize]
            .to_vec();
        staging.unmap();
        Ok(data)
    }
}

/// Workgroups for `n` independent items (one workgroup each), spread over x and y so that no
/// dimension exceeds 65,535; kernels rebuild the item as `wid.x + wid.y · nwg.x`
/// (`item_index` in `math.wgsl`) and skip items ≥ n.
pub(crate) fn groups_items(n: usize) -> [u32; 3] {
    if n <= 65_535 {
        [n as u32, 1, 1]
    } else {
        let y = n.div_ceil(65_535);
        [n.div_ceil(y) as u32, y as u32, 1]
    }
}

/// Workgroups for `n` invocations of [`WG`] threads, spread over x and y so no dimension exceeds
/// the 65,535 every device supports; kernels rebuild the flat index as
/// `gid.x + gid.y * nwg.x * WG`.
pub(crate) fn groups_1d(n: usize) -> [u32; 3] {
    let g = (n as u64).div_ceil(WG as u64);
    if g <= 65_535 {
        [g as u32, 1, 1]
    } else {
        let y = g.div_ceil(65_535);
        [g.div_ceil(y) as u32, y as u32, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies its parameter words P[0..P[0]] to its output.
    const ECHO: &str = "@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> OUT: array<u32>;
@compute @workgroup_size(1)
fn echo() {
    let n = P[0];
    for (var i = 0u; i < n; i++) { OUT[i] = P[i]; }
}";

    /// 600 dispatches (more than two batches of MAX_PENDING) with 1 to 100 parameter words (so
    /// some fit a slot of the shared buffer and some get their own): each sees its own words.
    #[test]
    fn parameter_words_reach_their_dispatch_across_batches_and_sizes() {
        let ctx = Ctx::open(None).expect("a GPU adapter (lavapipe in CI)");
        let mut runs = Vec::new();
        for d in 0..600u32 {
            let n = 1 + (d * 7) % 100;
            let words: Vec<u32> = (0..n)
                .map(|i| if i == 0 { n } else { d * 1000 + i })
                .collect();
            let out = ctx.alloc(4 * u64::from(n)).unwrap();
            ctx.dispatch(
                "echo",
                &|| ECHO.to_string(),
                "echo",
                &words,
                &[Bind::W(1, out.buffer())],
                [1, 1, 1],
            )
            .unwrap();
            runs.push((words, out));
        }
        assert!(runs.iter().any(|(w, _)| 4 * w.len() > PARAM_SLOT));
        for (d, (words, out)) in runs.iter().enumerate() {
            let got: Vec<u32> = bytemuck::pod_collect_to_vec(
                &ctx.read(out.buffer(), 4 * words.len() as u64).unwrap(),
            );
            assert_eq!(&got, words, "dispatch {d}");
        }
    }
}
