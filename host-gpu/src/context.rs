//! The wgpu device behind the backend: adapter choice (with a clear error when there is none),
//! compiled pipelines (cached per shader variant and entry point), a pool of storage buffers,
//! batched command recording (one submit per many dispatches) and read-back.
//!
//! Every kernel follows one binding convention: `@binding(0)` is a read-only `array<u32>` of
//! parameters (f32 values bit-cast), the operands follow at the binding numbers the caller names.
//! The parameters of a batch of dispatches share one buffer that lives as long as the device, a
//! [`PARAM_SLOT`]-byte slot each, written once just before the batch is submitted; binding 0 takes
//! its slot as a dynamic offset. So a bind group names only buffers that outlive many dispatches,
//! and one is made per (pipeline, operand buffers) and reused while those buffers live (the
//! pool keeps tensors' buffers, so a settle loop binds the same few combinations again and again).
//! Dispatches are recorded in order into one compute pass of one pending encoder; wgpu orders
//! the dispatches of a pass (each is a usage scope of its own), so a buffer written by one
//! dispatch is visible to the next. The pending work is submitted every
//! [`MAX_PENDING`] dispatches and before any read-back.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::{FxHashMap, FxHasher};
use sim::{Error, Result};
use wgpu::util::DeviceExt;

use crate::tile::GemmTile;

/// Dispatches recorded before the pending encoder is submitted.
const MAX_PENDING: usize = 256;
/// Bytes of parameter words one dispatch may keep in the batch's shared parameter buffer (the
/// offsets are multiples of it, and every device's storage offset alignment is at most 256);
/// dispatches with more words get a buffer of their own.
const PARAM_SLOT: usize = 256;
/// Bytes kept in the buffer pool at most (buffers beyond it are freed when released).
const POOL_CAP_BYTES: u64 = 4 << 30;
/// Bind groups kept at most; past it the cache starts over (each holds a descriptor set).
const MAX_BIND_GROUPS: usize = 4096;
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
    /// The batch's parameter words, one zero-padded [`PARAM_SLOT`] per dispatch, uploaded to
    /// [`Ctx::params_buf`] just before the batch is submitted.
    params: Vec<u8>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            pass: None,
            encoder: None,
            count: 0,
            params: Vec::new(),
        }
    }
}

/// What a pipeline is compiled for: the shader module, the entry point and the operand bindings
/// (number, writable). Looked up by [`PipeKey::hash_of`] without building a key per dispatch.
struct PipeKey {
    name: String,
    entry: String,
    binds: Vec<(u32, bool)>,
}

impl PipeKey {
    /// The bindings' (number, writable) pairs.
    fn binds<'a>(binds: &'a [Bind<'_>]) -> impl Iterator<Item = (u32, bool)> + 'a {
        binds.iter().map(|b| match b {
            Bind::R(i, _) => (*i, false),
            Bind::W(i, _) => (*i, true),
        })
    }

    /// The lookup hash of a pipeline.
    fn hash_of(name: &str, entry: &str, binds: &[Bind<'_>]) -> u64 {
        let mut h = FxHasher::default();
        name.hash(&mut h);
        entry.hash(&mut h);
        for b in Self::binds(binds) {
            b.hash(&mut h);
        }
        h.finish()
    }

    fn matches(&self, name: &str, entry: &str, binds: &[Bind<'_>]) -> bool {
        self.name == name
            && self.entry == entry
            && Self::binds(binds).eq(self.binds.iter().copied())
    }
}

/// Compiled pipelines by [`PipeKey::hash_of`] (a list per hash, told apart by the key).
type Pipelines = FxHashMap<u64, Vec<(PipeKey, Arc<Pipe>)>>;

/// A compiled pipeline and its bind group layout.
struct Pipe {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// What a cached bind group binds: its pipeline (by address: pipelines live as long as the
/// device) and the operand buffers by binding number. The key holds the buffers, so no other
/// buffer can take one's identity while its entry exists; [`Ctx::release`] drops the entries of
/// a buffer the pool frees.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    pipe: usize,
    buffers: Vec<(u32, wgpu::Buffer)>,
}

/// The device, its queue and the caches. Shared by every tensor of the backend.
pub(crate) struct Ctx {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    /// The output block of every GEMM on this device.
    pub(crate) gemm_tile: GemmTile,
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<Pipelines>,
    pool: Mutex<(HashMap<u64, Vec<wgpu::Buffer>>, u64)>,
    pending: Mutex<Pending>,
    /// The parameter slots of the pending batch ([`MAX_PENDING`] × [`PARAM_SLOT`] bytes).
    params_buf: wgpu::Buffer,
    /// Bind groups made so far, reused while their buffers live.
    bind_groups: Mutex<FxHashMap<BindKey, wgpu::BindGroup>>,
    /// Kernel launches recorded since the device was opened (for benchmarks).
    launches: AtomicU64,
    /// Bind groups made since the device was opened (the launches that found none to reuse).
    bind_groups_made: AtomicU64,
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
    /// first one, its GEMMs in blocks of `gemm_tile`.
    pub(crate) fn open(ordinal: Option<usize>, gemm_tile: GemmTile) -> Result<Arc<Ctx>> {
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
        let params_buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (MAX_PENDING * PARAM_SLOT) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Arc::new(Ctx {
            device,
            queue,
            info,
            limits,
            gemm_tile,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(FxHashMap::default()),
            pool: Mutex::new((HashMap::new(), 0)),
            pending: Mutex::new(Pending::new()),
            params_buf,
            bind_groups: Mutex::new(FxHashMap::default()),
            launches: AtomicU64::new(0),
            bind_groups_made: AtomicU64::new(0),
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

    /// Keep `buf` in the pool, or free it (with the bind groups that name it) when the pool is
    /// full.
    fn release(&self, buf: wgpu::Buffer) {
        let size = buf.size();
        {
            let mut pool = self.pool.lock().expect("pool lock");
            if pool.1 + size <= POOL_CAP_BYTES {
                pool.1 += size;
                pool.0.entry(size).or_default().push(buf);
                return;
            }
        }
        self.bind_groups
            .lock()
            .expect("bind group lock")
            .retain(|k, _| k.buffers.iter().all(|(_, b)| *b != buf));
    }

    /// The compiled pipeline for `entry` of the shader `name` (source built by `source` on first
    /// use), with the layout of `binds` (params at 0, then the given bindings).
    fn pipeline(
        &self,
        name: &str,
        source: &dyn Fn() -> String,
        entry: &str,
        binds: &[Bind<'_>],
    ) -> Result<Arc<Pipe>> {
        let hash = PipeKey::hash_of(name, entry, binds);
        let found = |m: &Pipelines| {
            m.get(&hash)?
                .iter()
                .find(|(k, _)| k.matches(name, entry, binds))
                .map(|(_, p)| p.clone())
        };
        if let Some(p) = found(&self.pipelines.lock().expect("pipeline lock")) {
            return Ok(p);
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
        let storage = |ro: bool, dynamic: bool| wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only: ro },
            has_dynamic_offset: dynamic,
            min_binding_size: None,
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: storage(true, true),
            count: None,
        }];
        for (i, w) in PipeKey::binds(binds) {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: storage(!w, false),
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
        let mut pipelines = self.pipelines.lock().expect("pipeline lock");
        if let Some(p) = found(&pipelines) {
            return Ok(p);
        }
        let p = Arc::new(Pipe {
            pipeline,
            layout: bgl,
        });
        let key = PipeKey {
            name: name.to_string(),
            entry: entry.to_string(),
            binds: PipeKey::binds(binds).collect(),
        };
        pipelines.entry(hash).or_default().push((key, p.clone()));
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
        let bytes: &[u8] = if params.is_empty() {
            &[0; 4]
        } else {
            bytemuck::cast_slice(params)
        };
        // Recorded under the lock: another thread's later work must not be submitted first, and
        // the batch's parameter slots are taken in recording order.
        let mut pending = self.pending.lock().expect("pending lock");
        let (bg, offset) = if bytes.len() <= PARAM_SLOT {
            let offset = pending.params.len();
            pending.params.extend_from_slice(bytes);
            pending.params.resize(offset + PARAM_SLOT, 0);
            (self.bind_group(&p, binds), offset as u32)
        } else {
            // Too many words for a slot: a buffer of their own, and a bind group for this launch.
            let own = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytes,
                    usage: wgpu::BufferUsages::STORAGE,
                });
            (
                self.make_bind_group(&p, own.as_entire_buffer_binding(), binds),
                0,
            )
        };
        let pass = self.pass(&mut pending);
        pass.set_pipeline(&p.pipeline);
        pass.set_bind_group(0, &bg, &[offset]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        pending.count += 1;
        self.launches.fetch_add(1, Ordering::Relaxed);
        if pending.count >= MAX_PENDING {
            self.submit(&mut pending);
        }
        Ok(())
    }

    /// The bind group of `p` with the batch's parameter slots at binding 0 (the slot is the
    /// dispatch's dynamic offset) and `binds`: the one made before for these buffers, or a new
    /// one, kept.
    fn bind_group(&self, p: &Arc<Pipe>, binds: &[Bind<'_>]) -> wgpu::BindGroup {
        let key = BindKey {
            pipe: Arc::as_ptr(p) as usize,
            buffers: binds
                .iter()
                .map(|b| match b {
                    Bind::R(i, b) | Bind::W(i, b) => (*i, (*b).clone()),
                })
                .collect(),
        };
        let mut cache = self.bind_groups.lock().expect("bind group lock");
        if let Some(bg) = cache.get(&key) {
            return bg.clone();
        }
        let slot = wgpu::BufferBinding {
            buffer: &self.params_buf,
            offset: 0,
            size: wgpu::BufferSize::new(PARAM_SLOT as u64),
        };
        let bg = self.make_bind_group(p, slot, binds);
        if cache.len() >= MAX_BIND_GROUPS {
            cache.clear();
        }
        cache.insert(key, bg.clone());
        bg
    }

    /// A new bind group of `p`: `params` at binding 0, `binds` at theirs.
    fn make_bind_group(
        &self,
        p: &Pipe,
        params: wgpu::BufferBinding<'_>,
        binds: &[Bind<'_>],
    ) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(params),
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
        self.bind_groups_made.fetch_add(1, Ordering::Relaxed);
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.layout,
            entries: &entries,
        })
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
        if !pending.params.is_empty() {
            // wgpu orders this write after the work submitted before (which read the slots'
            // previous words) and before the commands submitted next.
            self.queue
                .write_buffer(&self.params_buf, 0, &pending.params);
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

    /// Bind groups made since the device was opened.
    pub(crate) fn bind_groups_made(&self) -> u64 {
        self.bind_groups_made.load(Ordering::Relaxed)
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

    /// Adds its parameter word P[0] to each of IN's first P[1] words, into OUT.
    const ADD_P: &str = "@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read> IN: array<u32>;
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;
@compute @workgroup_size(1)
fn add_p() {
    for (var i = 0u; i < P[1]; i++) { OUT[i] = IN[i] + P[0]; }
}";

    /// Record ADD_P from `src` into `dst` over 4 words with the parameter words `p` (at least 2).
    fn add_p(ctx: &Ctx, p: &[u32], src: &PoolBuf, dst: &PoolBuf) {
        ctx.dispatch(
            "add_p",
            &|| ADD_P.to_string(),
            "add_p",
            p,
            &[Bind::R(1, src.buffer()), Bind::W(2, dst.buffer())],
            [1, 1, 1],
        )
        .unwrap();
    }

    fn words(ctx: &Ctx, b: &PoolBuf) -> Vec<u32> {
        bytemuck::pod_collect_to_vec(&ctx.read(b.buffer(), 16).unwrap())
    }

    /// A launch on buffers bound before reuses their bind group, yet reads its own parameter
    /// slot; other buffers, or parameters too long for a slot, make a new one.
    #[test]
    fn bind_groups_are_reused_for_the_same_buffers_and_read_their_own_words() {
        let ctx = Ctx::open(None, GemmTile::T64).expect("a GPU adapter (lavapipe in CI)");
        let a = ctx
            .alloc_init(bytemuck::cast_slice(&[1u32, 2, 3, 4]))
            .unwrap();
        let b = ctx.alloc(16).unwrap();
        let c = ctx.alloc(16).unwrap();
        let made = || ctx.bind_groups_made();
        let m0 = made();
        add_p(&ctx, &[10, 4], &a, &b);
        assert_eq!(made() - m0, 1);
        assert_eq!(words(&ctx, &b), [11, 12, 13, 14]);
        // The same buffers, other words, in this batch and in a later one.
        add_p(&ctx, &[20, 4], &a, &b);
        add_p(&ctx, &[30, 4], &a, &c);
        add_p(&ctx, &[40, 4], &a, &c);
        assert_eq!(made() - m0, 2, "one new bind group for (a, c)");
        assert_eq!(words(&ctx, &b), [21, 22, 23, 24]);
        assert_eq!(words(&ctx, &c), [41, 42, 43, 44]);
        // The binding roles swapped: another bind group.
        add_p(&ctx, &[1, 4], &b, &a);
        assert_eq!(made() - m0, 3);
        assert_eq!(words(&ctx, &a), [22, 23, 24, 25]);
        // Words past a slot get a buffer and a bind group of their own, every time.
        let long: Vec<u32> = [5, 4].into_iter().chain(0..PARAM_SLOT as u32).collect();
        add_p(&ctx, &long, &a, &b);
        add_p(&ctx, &long, &a, &b);
        assert_eq!(made() - m0, 5);
        assert_eq!(words(&ctx, &b), [27, 28, 29, 30]);
    }

    /// A buffer kept by the pool keeps its bind groups (a later tensor in it reuses them); one
    /// the pool frees takes its bind groups with it, so the cache holds no freed memory.
    #[test]
    fn a_buffer_the_pool_frees_leaves_the_bind_group_cache() {
        let ctx = Ctx::open(None, GemmTile::T64).expect("a GPU adapter (lavapipe in CI)");
        let a = ctx.alloc(16).unwrap();
        let b = ctx.alloc(16).unwrap();
        add_p(&ctx, &[1, 4], &a, &b);
        ctx.sync().unwrap();
        let named = |buf: &wgpu::Buffer| {
            ctx.bind_groups
                .lock()
                .unwrap()
                .keys()
                .any(|k| k.buffers.iter().any(|(_, x)| x == buf))
        };
        let (ab, bb) = (a.buffer().clone(), b.buffer().clone());
        assert!(named(&ab) && named(&bb));
        drop(a);
        assert!(named(&ab), "a pooled buffer keeps its bind groups");
        ctx.pool.lock().unwrap().1 = POOL_CAP_BYTES;
        drop(b);
        assert!(!named(&bb), "a freed buffer's bind groups are dropped");
        assert!(!named(&ab), "the bind group named both");
    }

    /// 600 dispatches (more than two batches of MAX_PENDING) with 1 to 100 parameter words (so
    /// some fit a slot of the shared buffer and some get their own): each sees its own words.
    #[test]
    fn parameter_words_reach_their_dispatch_across_batches_and_sizes() {
        let ctx = Ctx::open(None, GemmTile::T64).expect("a GPU adapter (lavapipe in CI)");
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
