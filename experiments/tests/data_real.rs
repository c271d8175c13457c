//! The real data on these machines: the shared CIFAR-10 folder and Debian's Fashion-MNIST.
//! These tests fail (never skip) when the data is missing, with instructions to install it.

mod common;
use common::*;
use experiments::data::{Dataset, DatasetSpec};

fn records(d: &Dataset) -> Vec<(u16, &[u8])> {
    let mut v: Vec<(u16, &[u8])> = (0..d.len()).map(|i| (d.labels[i], d.image(i))).collect();
    v.sort();
    v
}

#[test]
fn cifar10_zip_test_split_equals_test_batch_bin() {
    let dir = cifar10_dir();
    let t = std::time::Instant::now();
    let zip = DatasetSpec::parse(&format!(
        "folder:{}:test",
        dir.join("cifar10-jpeg.zip").display()
    ))
    .unwrap()
    .load()
    .unwrap()
    .remove(0);
    let zip_time = t.elapsed();
    let bin = DatasetSpec::parse(&format!("cifar10:{}", dir.join("test_batch.bin").display()))
        .unwrap()
        .load()
        .unwrap()
        .remove(0);
    assert_eq!(zip.shape, [10000, 3, 32, 32]);
    assert_eq!(bin.shape, [10000, 3, 32, 32]);
    assert_eq!(zip.classes, bin.classes);
    assert_eq!(
        bin.classes,
        [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck"
        ]
    );
    assert_eq!(zip.class_counts(), vec![1000; 10]);
    assert_eq!(bin.class_counts(), vec![1000; 10]);
    // README: class counts among the first 1,000 records of the (shuffled) binary.
    assert_eq!(
        bin.first(1000).class_counts(),
        vec![88, 98, 99, 111, 110, 97, 97, 114, 80, 106]
    );
    let (a, b) = (records(&zip), records(&bin));
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(
        differing, 0,
        "{differing} of 10000 (label, pixels) records differ between the zip's JPEGs and test_batch.bin"
    );
    eprintln!("decoded the zip's test split in {zip_time:?}");
}

#[test]
fn cifar10_zip_train_split_and_autodetect() {
    let dir = cifar10_dir();
    let t = std::time::Instant::now();
    let ds = DatasetSpec::parse(&dir.join("cifar10-jpeg.zip").display().to_string())
        .unwrap()
        .load()
        .unwrap();
    eprintln!("decoded all 60000 JPEGs in {:?}", t.elapsed());
    assert_eq!(ds.len(), 2);
    let (test, train) = (&ds[0], &ds[1]);
    assert_eq!(train.split, "train");
    assert_eq!(train.shape, [50000, 3, 32, 32]);
    assert_eq!(train.class_counts(), vec![5000; 10]);
    assert_eq!(test.shape, [10000, 3, 32, 32]);
    // Per-channel mean of CIFAR-10 train (the well-known 0.4914, 0.4822, 0.4465; JPEG changes
    // the third decimal at most).
    let (m, s) = train.channel_mean_std();
    for (got, want) in m.iter().zip([0.4914, 0.4822, 0.4465]) {
        assert!((got - want).abs() < 3e-3, "mean {m:?}");
    }
    for (got, want) in s.iter().zip([0.2470, 0.2435, 0.2616]) {
        assert!((got - want).abs() < 5e-3, "std {s:?}");
    }
}

#[test]
fn fashion_mnist_facts() {
    let dir = fashion_mnist_dir();
    let ds = DatasetSpec::parse(&format!("fashion-mnist:{}", dir.display()))
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(ds.len(), 2);
    let (train, test) = (&ds[0], &ds[1]);
    assert_eq!(train.split, "train");
    assert_eq!(train.shape, [60000, 1, 28, 28]);
    assert_eq!(test.shape, [10000, 1, 28, 28]);
    assert_eq!(train.classes.len(), 10);
    assert_eq!(train.classes[0], "T-shirt/top");
    assert_eq!(train.classes[9], "Ankle boot");
    assert_eq!(train.class_counts(), vec![6000; 10]);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    // Known first labels of the official files: train starts 9 (ankle boot), 0, 0, 3, 0;
    // test starts 9, 2, 1, 1, 6.
    assert_eq!(train.labels[..5], [9, 0, 0, 3, 0]);
    assert_eq!(test.labels[..5], [9, 2, 1, 1, 6]);
    // The commonly quoted normalization constants of Fashion-MNIST train: mean 0.2860, std 0.3530.
    let (m, s) = train.channel_mean_std();
    assert!((m[0] - 0.2860).abs() < 1e-3, "{m:?}");
    assert!((s[0] - 0.3530).abs() < 1e-3, "{s:?}");
    // The default location form of the spec loads the same thing when it is Debian's.
    if dir == std::path::Path::new("/usr/share/datasets/fashion-mnist") {
        let d2 = DatasetSpec::parse("fashion-mnist:test")
            .unwrap()
            .load()
            .unwrap();
        assert_eq!(d2[0].labels, test.labels);
    }
}
