//! Bad input: every loader error names the file and the byte offset or archive entry.

mod common;
use common::*;
use experiments::data::{DataError, DatasetSpec, Location, cifar, idx};
use std::path::Path;

fn spec(s: &str) -> DatasetSpec {
    DatasetSpec::parse(s).unwrap()
}

fn load_err(s: &str) -> DataError {
    match spec(s).load() {
        Ok(d) => panic!("{s}: expected an error, loaded {} splits", d.len()),
        Err(e) => e,
    }
}

/// A valid Fashion-style IDX directory with 3 train and 2 test images of 4x5 (labels in 0..10).
fn idx_dir(dir: &Path, gzip: bool) {
    let wr = |name: &str, b: Vec<u8>| {
        if gzip {
            write(dir, &format!("{name}.gz"), &gz(&b));
        } else {
            write(dir, name, &b);
        }
    };
    wr(
        "train-images-idx3-ubyte",
        idx_images(3, 4, 5, |i, k| (i * 20 + k) as u8),
    );
    wr("train-labels-idx1-ubyte", idx_labels(&[9, 0, 4]));
    wr(
        "t10k-images-idx3-ubyte",
        idx_images(2, 4, 5, |i, k| (200 + i + k) as u8),
    );
    wr("t10k-labels-idx1-ubyte", idx_labels(&[1, 2]));
}

#[test]
fn idx_valid_raw_and_gzip_load() {
    for gzip in [false, true] {
        let t = tempfile::tempdir().unwrap();
        idx_dir(t.path(), gzip);
        let ds = spec(&format!("mnist:{}", t.path().display()))
            .load()
            .unwrap();
        assert_eq!(ds.len(), 2);
        assert_eq!(ds[0].split, "train");
        assert_eq!(ds[0].shape, [3, 1, 4, 5]);
        assert_eq!(ds[0].labels, vec![9, 0, 4]);
        assert_eq!(ds[0].image(1)[..3], [20, 21, 22]);
        assert_eq!(ds[1].split, "test");
        assert_eq!(ds[1].shape, [2, 1, 4, 5]);
        assert_eq!(ds[1].labels, vec![1, 2]);
        assert_eq!(ds[1].image(1)[0], 201);
    }
}

#[test]
fn idx_truncated_images() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), false);
    let p = t.path().join("train-images-idx3-ubyte");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..16 + 20 + 7]).unwrap(); // one full image and 7 bytes of the next
    let e = load_err(&format!("mnist:{}:train", t.path().display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(36), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("train-images-idx3-ubyte") && m.contains("truncated"),
        "{m}"
    );
}

#[test]
fn idx_truncated_header() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), false);
    let p = t.path().join("train-images-idx3-ubyte");
    std::fs::write(&p, [0, 0, 8, 3, 0, 0]).unwrap();
    let e = load_err(&format!("mnist:{}:train", t.path().display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(6), "{e}");
}

#[test]
fn idx_bad_magic() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), true);
    // A label file where the image file should be.
    let p = t.path().join("t10k-images-idx3-ubyte.gz");
    std::fs::write(&p, gz(&idx_labels(&[1, 2]))).unwrap();
    let e = load_err(&format!("mnist:{}:test", t.path().display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(0));
    assert!(e.to_string().contains("bad magic number 0x00000801"), "{e}");
    assert!(e.to_string().contains("t10k-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn idx_wrong_label_count() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), false);
    let p = t.path().join("train-labels-idx1-ubyte");
    std::fs::write(&p, idx_labels(&[1, 2])).unwrap(); // 2 labels for 3 images
    let e = load_err(&format!("mnist:{}:train", t.path().display()));
    assert_eq!(e.file, p);
    let m = e.to_string();
    assert!(m.contains("2 labels") && m.contains("3 images"), "{m}");
}

#[test]
fn idx_label_header_disagrees_with_size() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), false);
    let p = t.path().join("train-labels-idx1-ubyte");
    let mut b = idx_labels(&[1, 2, 3]);
    b.pop(); // header says 3, file holds 2
    std::fs::write(&p, &b).unwrap();
    let e = load_err(&format!("mnist:{}:train", t.path().display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(10), "{e}");
}

#[test]
fn idx_label_out_of_range() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), false);
    let p = t.path().join("train-labels-idx1-ubyte");
    std::fs::write(&p, idx_labels(&[1, 10, 3])).unwrap();
    let e = load_err(&format!("mnist:{}:train", t.path().display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(9), "{e}");
}

#[test]
fn idx_corrupt_gzip() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), true);
    let p = t.path().join("train-images-idx3-ubyte.gz");
    let mut b = std::fs::read(&p).unwrap();
    // Keep the gzip header, garble the deflate stream.
    for v in b.iter_mut().skip(12).take(20) {
        *v ^= 0xa5;
    }
    std::fs::write(&p, &b).unwrap();
    let e = load_err(&format!("mnist:{}:train", t.path().display()));
    assert_eq!(e.file, p);
    assert!(matches!(e.at, Location::Offset(_)), "{e:?}");
    assert!(e.to_string().contains("gzip"), "{e}");
}

#[test]
fn idx_truncated_gzip() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), true);
    let p = t.path().join("t10k-labels-idx1-ubyte.gz");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 10]).unwrap();
    let e = load_err(&format!("mnist:{}:test", t.path().display()));
    assert_eq!(e.file, p);
    assert!(e.to_string().contains("gzip"), "{e}");
}

#[test]
fn idx_missing_file_named() {
    let t = tempfile::tempdir().unwrap();
    idx_dir(t.path(), false);
    std::fs::remove_file(t.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let e = load_err(&format!("mnist:{}:test", t.path().display()));
    assert!(e.to_string().contains("t10k-labels-idx1-ubyte"), "{e}");
}

#[test]
fn cifar_partial_record() {
    let t = tempfile::tempdir().unwrap();
    let mut b = cifar10_record(3, 0);
    b.extend(cifar10_record(4, 1));
    b.extend(&cifar10_record(5, 2)[..100]);
    let p = write(t.path(), "data.bin", &b);
    let e = load_err(&format!("cifar10:{}", p.display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(2 * 3073), "{e}");
    assert!(e.to_string().contains("partial record 2"), "{e}");
}

#[test]
fn cifar_label_out_of_range() {
    let t = tempfile::tempdir().unwrap();
    let mut b = cifar10_record(3, 0);
    b.extend(cifar10_record(10, 1));
    let p = write(t.path(), "test_batch.bin", &b);
    let e = load_err(&format!("cifar10:{}", p.display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(3073), "{e}");
    assert!(e.to_string().contains("label 10 of record 1"), "{e}");
}

#[test]
fn cifar100_fine_label_out_of_range() {
    let t = tempfile::tempdir().unwrap();
    let mut b = cifar100_record(19, 99, 0);
    b.extend(cifar100_record(19, 99, 1));
    b.extend(cifar100_record(2, 100, 2));
    let p = write(t.path(), "train.bin", &b);
    let e = load_err(&format!("cifar100:{}", p.display()));
    assert_eq!(e.file, p);
    assert_eq!(e.at, Location::Offset(2 * 3074 + 1), "{e}");
    assert!(e.to_string().contains("fine label 100"), "{e}");
}

#[test]
fn cifar_error_inside_tar_names_entry_and_offset() {
    let t = tempfile::tempdir().unwrap();
    let mut bad = cifar10_record(1, 0);
    bad.extend(&cifar10_record(1, 1)[..10]);
    let files = vec![
        ("cifar-10-batches-bin/test_batch.bin".to_string(), bad),
        (
            "cifar-10-batches-bin/batches.meta.txt".to_string(),
            b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n".to_vec(),
        ),
    ];
    let p = write(t.path(), "cifar-10-binary.tar.gz", &tar_gz(&files));
    let e = load_err(&format!("cifar10:{}:test", p.display()));
    assert_eq!(e.file, p);
    assert_eq!(
        e.at,
        Location::EntryOffset("cifar-10-batches-bin/test_batch.bin".into(), 3073),
        "{e}"
    );
    let m = e.to_string();
    assert!(
        m.contains("cifar-10-binary.tar.gz") && m.contains("test_batch.bin"),
        "{m}"
    );
}

#[test]
fn cifar_corrupt_tar_gz() {
    let t = tempfile::tempdir().unwrap();
    let files = vec![(
        "cifar-10-batches-bin/test_batch.bin".to_string(),
        cifar10_record(1, 0),
    )];
    let mut b = tar_gz(&files);
    let n = b.len();
    b.truncate(n / 2);
    let p = write(t.path(), "cifar-10-binary.tar.gz", &b);
    let e = load_err(&format!("cifar10:{}:test", p.display()));
    assert_eq!(e.file, p);
    assert!(
        matches!(&e.at, Location::EntryOffset(n, _) if n == "cifar-10-batches-bin/test_batch.bin"),
        "{e:?}"
    );
    assert!(e.to_string().contains("cifar-10-binary.tar.gz"), "{e}");
}

#[test]
fn cifar_direct_parse_reports_offset() {
    // The record parser alone, on bytes that are no CIFAR-100 file.
    let mut out = cifar::Records::default();
    let e = cifar::parse_records(
        Path::new("x.bin"),
        &[0u8; 3074 * 2 + 5],
        cifar::Variant::Cifar100,
        &mut out,
    )
    .unwrap_err();
    assert_eq!(e.at, Location::Offset(6148));
    let e = idx::parse_images(
        Path::new("y"),
        &[
            0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5,
        ],
    )
    .unwrap_err();
    assert_eq!(e.at, Location::Offset(20), "{e}");
    assert!(e.to_string().contains("trailing"), "{e}");
}

#[test]
fn zip_with_undecodable_image() {
    let t = tempfile::tempdir().unwrap();
    let good = png(4, 4, |x, y, c| (x + y + c) as u8);
    let files = vec![
        ("root/train/cat/0001.png".to_string(), good.clone()),
        ("root/train/dog/0001.png".to_string(), good.clone()),
        (
            "root/train/dog/0002.jpg".to_string(),
            b"\xff\xd8\xff\xe0 this is no JPEG".to_vec(),
        ),
    ];
    let p = write(t.path(), "imgs.zip", &zip_bytes(&files));
    let e = load_err(&format!("folder:{}", p.display()));
    assert_eq!(e.file, p);
    assert_eq!(
        e.at,
        Location::Entry("root/train/dog/0002.jpg".into()),
        "{e}"
    );
    assert!(e.to_string().contains("JPEG"), "{e}");
}

#[test]
fn zip_with_truncated_jpeg() {
    // A real JPEG from the shared data, cut in half: libjpeg would pad it with gray; we refuse.
    let dir = cifar10_dir();
    let z = std::fs::File::open(dir.join("cifar10-jpeg.zip")).unwrap();
    let mut z = zip::ZipArchive::new(z).unwrap();
    let mut jpg = Vec::new();
    {
        use std::io::Read;
        let names: Vec<String> = z.file_names().map(|n| n.unwrap().to_string()).collect();
        let name = names.iter().find(|n| n.ends_with(".jpg")).unwrap();
        z.by_name(name).unwrap().read_to_end(&mut jpg).unwrap();
    }
    let t = tempfile::tempdir().unwrap();
    let half = jpg[..jpg.len() / 2].to_vec();
    let files = vec![
        ("d/test/a/1.jpg".to_string(), jpg.clone()),
        ("d/test/b/1.jpg".to_string(), half),
    ];
    let p = write(t.path(), "imgs.zip", &zip_bytes(&files));
    let e = load_err(&format!("folder:{}:test", p.display()));
    assert_eq!(e.at, Location::Entry("d/test/b/1.jpg".into()), "{e}");
    // And the intact one alone decodes.
    let files = vec![("d/test/a/1.jpg".to_string(), jpg)];
    let p = write(t.path(), "ok.zip", &zip_bytes(&files));
    let ds = spec(&format!("folder:{}", p.display())).load().unwrap();
    assert_eq!(ds[0].shape, [1, 3, 32, 32]);
}

#[test]
fn folder_inconsistent_image_sizes() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "train/a/1.png", &png(4, 4, |_, _, _| 1));
    write(t.path(), "train/a/2.png", &png(4, 4, |_, _, _| 2));
    write(t.path(), "train/b/1.png", &png(5, 4, |_, _, _| 3));
    let e = load_err(&format!("folder:{}", t.path().display()));
    assert_eq!(e.file, t.path());
    assert_eq!(e.at, Location::Entry("train/b/1.png".into()), "{e}");
    assert!(e.to_string().contains("5x4, expected 4x4"), "{e}");
}

#[test]
fn folder_class_not_in_meta() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "train/a/1.png", &png(2, 2, |_, _, _| 1));
    write(t.path(), "train/zebra/1.png", &png(2, 2, |_, _, _| 1));
    write(t.path(), "classes.txt", b"a\nb\n");
    let e = load_err(&format!("folder:{}", t.path().display()));
    assert_eq!(e.at, Location::Entry("train/zebra/1.png".into()), "{e}");
}

#[test]
fn not_a_zip_nor_anything() {
    let t = tempfile::tempdir().unwrap();
    let p = write(t.path(), "junk.zip", b"PK\x03\x04 but nothing else");
    let e = load_err(&format!("folder:{}", p.display()));
    assert_eq!(e.file, p);
    let p = write(t.path(), "junk.dat", &[1u8; 1000]);
    let e = load_err(&p.display().to_string());
    assert_eq!(e.file, p);
    assert!(e.to_string().contains("cannot tell"), "{e}");
}
