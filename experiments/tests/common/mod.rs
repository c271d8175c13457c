//! Helpers shared by the data tests: writers of small files in the official layouts, and the
//! locations of the real data.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// Pixel byte `j` of synthetic image `r` (an arbitrary but known pattern).
pub fn px(r: usize, j: usize) -> u8 {
    ((r * 31 + j * 7 + j / 1024) % 251) as u8
}

/// One CIFAR-10 record: label then 3072 pixel bytes.
pub fn cifar10_record(label: u8, r: usize) -> Vec<u8> {
    let mut v = vec![label];
    v.extend((0..3072).map(|j| px(r, j)));
    v
}

/// One CIFAR-100 record: coarse, fine, then 3072 pixel bytes.
pub fn cifar100_record(coarse: u8, fine: u8, r: usize) -> Vec<u8> {
    let mut v = vec![coarse, fine];
    v.extend((0..3072).map(|j| px(r, j)));
    v
}

/// Write `bytes` to `dir/name`, creating parents; returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// gzip-compress bytes.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A .tar.gz of (entry name, bytes).
pub fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(enc);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A zip (stored) of (entry name, bytes).
pub fn zip_bytes(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opt =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in files {
        w.start_file(name.as_str(), opt).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A PNG of an RGB image `w`×`h` whose pixel (x, y) channel c is `f(x, y, c)`.
pub fn png(w: u32, h: u32, f: impl Fn(u32, u32, u32) -> u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([f(x, y, 0), f(x, y, 1), f(x, y, 2)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// IDX image file bytes: n images of rows×cols with pixel (i, k) = `f(i, k)`.
pub fn idx_images(n: usize, rows: usize, cols: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(0x0000_0803u32.to_be_bytes());
    v.extend((n as u32).to_be_bytes());
    v.extend((rows as u32).to_be_bytes());
    v.extend((cols as u32).to_be_bytes());
    for i in 0..n {
        for k in 0..rows * cols {
            v.push(f(i, k));
        }
    }
    v
}

/// IDX label file bytes.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(0x0000_0801u32.to_be_bytes());
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// The shared CIFAR-10 folder (`$EPSIM_CIFAR10_DIR`, else `shared/datasets/cifar10` beside the
/// repository). Panics with install instructions if it is missing: tests never skip silently.
pub fn cifar10_dir() -> PathBuf {
    let d = std::env::var_os("EPSIM_CIFAR10_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets/cifar10")
        });
    for f in ["cifar10-jpeg.zip", "test_batch.bin", "batches.meta.txt"] {
        assert!(
            d.join(f).is_file(),
            "missing {}: the CIFAR-10 test data lives in shared/datasets/cifar10 beside the \
             repository (cifar10-jpeg.zip, test_batch.bin, batches.meta.txt); put it there or \
             set EPSIM_CIFAR10_DIR to a folder holding those files",
            d.join(f).display()
        );
    }
    d
}

/// The Fashion-MNIST directory (`$EPSIM_FASHION_MNIST_DIR`, else Debian's location). Panics with
/// install instructions if it is missing.
pub fn fashion_mnist_dir() -> PathBuf {
    let d = std::env::var_os("EPSIM_FASHION_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        assert!(
            d.join(f).is_file(),
            "missing {}: install Fashion-MNIST with `apt-get install -y dataset-fashion-mnist` \
             (Debian puts it in /usr/share/datasets/fashion-mnist) or set EPSIM_FASHION_MNIST_DIR",
            d.join(f).display()
        );
    }
    d
}
