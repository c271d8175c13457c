//! Loaders on small files written here in the official layouts: CIFAR-10 and CIFAR-100 as single
//! files, extracted directories and .tar.gz archives; image folders (directory and zip) of PNGs.

mod common;
use common::*;
use experiments::data::{DatasetSpec, Kind, spec::detect};

fn load(s: &str) -> Vec<experiments::data::Dataset> {
    DatasetSpec::parse(s)
        .unwrap()
        .load()
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// CIFAR-100 test set of 4 records and train set of 6, with known labels.
fn cifar100_files() -> Vec<(String, Vec<u8>)> {
    let mut train = Vec::new();
    for r in 0..6 {
        train.extend(cifar100_record((r * 3) as u8, (r * 17) as u8, r));
    }
    let mut test = Vec::new();
    for r in 0..4 {
        test.extend(cifar100_record(19 - r as u8, 99 - r as u8, 100 + r));
    }
    let fine: String = (0..100).map(|i| format!("fine_{i}\n")).collect();
    let coarse: String = (0..20).map(|i| format!("coarse_{i}\n")).collect();
    vec![
        ("cifar-100-binary/train.bin".into(), train),
        ("cifar-100-binary/test.bin".into(), test),
        (
            "cifar-100-binary/fine_label_names.txt".into(),
            fine.into_bytes(),
        ),
        (
            "cifar-100-binary/coarse_label_names.txt".into(),
            coarse.into_bytes(),
        ),
    ]
}

fn check_cifar100(ds: &[experiments::data::Dataset]) {
    assert_eq!(ds.len(), 2);
    let (train, test) = (&ds[0], &ds[1]);
    assert_eq!(
        (train.split.as_str(), test.split.as_str()),
        ("train", "test")
    );
    assert_eq!(train.shape, [6, 3, 32, 32]);
    assert_eq!(test.shape, [4, 3, 32, 32]);
    assert_eq!(train.labels, vec![0, 17, 34, 51, 68, 85]);
    assert_eq!(test.labels, vec![99, 98, 97, 96]);
    let (coarse, cnames) = train.coarse.as_ref().unwrap();
    assert_eq!(coarse, &vec![0, 3, 6, 9, 12, 15]);
    assert_eq!(cnames.len(), 20);
    assert_eq!(cnames[7], "coarse_7");
    assert_eq!(test.coarse.as_ref().unwrap().0, vec![19, 18, 17, 16]);
    assert_eq!(train.classes.len(), 100);
    assert_eq!(train.classes[17], "fine_17");
    for r in 0..6 {
        let img = train.image(r);
        assert!((0..3072).all(|j| img[j] == px(r, j)), "train image {r}");
    }
    let img = test.image(2);
    assert!((0..3072).all(|j| img[j] == px(102, j)));
    assert_eq!(train.class_counts().iter().sum::<usize>(), 6);
}

#[test]
fn cifar100_dir_tar_and_file() {
    let t = tempfile::tempdir().unwrap();
    let files = cifar100_files();
    for (n, b) in &files {
        write(t.path(), &format!("x/{n}"), b);
    }
    // The parent of cifar-100-binary/, the directory itself, and autodetection.
    check_cifar100(&load(&format!("cifar100:{}", t.path().join("x").display())));
    check_cifar100(&load(&format!(
        "cifar100:{}",
        t.path().join("x/cifar-100-binary").display()
    )));
    assert_eq!(detect(&t.path().join("x")).unwrap(), Kind::Cifar100);
    check_cifar100(&load(&t.path().join("x").display().to_string()));
    // tar.gz
    let tgz = write(t.path(), "cifar-100-binary.tar.gz", &tar_gz(&files));
    check_cifar100(&load(&format!("cifar100:{}", tgz.display())));
    check_cifar100(&load(&tgz.display().to_string()));
    // one split of the tar.gz
    let ds = load(&format!("cifar100:{}:test", tgz.display()));
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].labels, vec![99, 98, 97, 96]);
    // the single file, detected by its size (4 × 3074 bytes)
    let f = t.path().join("x/cifar-100-binary/test.bin");
    assert_eq!(detect(&f).unwrap(), Kind::Cifar100);
    let ds = load(&f.display().to_string());
    assert_eq!(ds[0].split, "test");
    assert_eq!(ds[0].classes[98], "fine_98");
}

fn cifar10_files() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for b in 1..=5 {
        let mut d = Vec::new();
        for k in 0..2 {
            let r = b * 10 + k;
            d.extend(cifar10_record(((b + k) % 10) as u8, r));
        }
        v.push((format!("cifar-10-batches-bin/data_batch_{b}.bin"), d));
    }
    let mut test = Vec::new();
    for r in 0..3 {
        test.extend(cifar10_record(9 - r as u8, 500 + r));
    }
    v.push(("cifar-10-batches-bin/test_batch.bin".into(), test));
    v.push((
        "cifar-10-batches-bin/batches.meta.txt".into(),
        b"c0\nc1\nc2\nc3\nc4\nc5\nc6\nc7\nc8\nc9\n\n".to_vec(),
    ));
    v
}

fn check_cifar10(ds: &[experiments::data::Dataset]) {
    assert_eq!(ds.len(), 2);
    let (train, test) = (&ds[0], &ds[1]);
    assert_eq!(train.shape, [10, 3, 32, 32]);
    // batches in order 1..5, records in file order
    assert_eq!(train.labels, vec![1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
    assert!((0..3072).all(|j| train.image(3)[j] == px(21, j)));
    assert!((0..3072).all(|j| train.image(9)[j] == px(51, j)));
    assert_eq!(test.labels, vec![9, 8, 7]);
    assert!((0..3072).all(|j| test.image(1)[j] == px(501, j)));
    assert_eq!(train.classes[3], "c3");
    assert!(train.coarse.is_none());
}

#[test]
fn cifar10_dir_and_tar() {
    let t = tempfile::tempdir().unwrap();
    let files = cifar10_files();
    for (n, b) in &files {
        write(t.path(), n, b);
    }
    check_cifar10(&load(&format!("cifar10:{}", t.path().display())));
    assert_eq!(detect(t.path()).unwrap(), Kind::Cifar10);
    check_cifar10(&load(
        &t.path().join("cifar-10-batches-bin").display().to_string(),
    ));
    let tgz = write(t.path(), "cifar-10-binary.tar.gz", &tar_gz(&files));
    check_cifar10(&load(&format!("cifar10:{}", tgz.display())));
    check_cifar10(&load(&tgz.display().to_string()));
    // a missing batch file is named
    std::fs::remove_file(t.path().join("cifar-10-batches-bin/data_batch_4.bin")).unwrap();
    let e = DatasetSpec::parse(&format!("cifar10:{}:train", t.path().display()))
        .unwrap()
        .load()
        .unwrap_err();
    assert!(e.to_string().contains("data_batch_4.bin"), "{e}");
}

#[test]
fn image_folder_dir_and_zip_of_pngs() {
    let t = tempfile::tempdir().unwrap();
    // classes "b" and "a" (sorted: a=0, b=1); pixel (x,y,c) = 10·img + x + 3y + 50c
    let img = |k: u32| png(3, 2, move |x, y, c| (10 * k + x + 3 * y + 50 * c) as u8);
    let files: Vec<(String, Vec<u8>)> = vec![
        ("set/train/b/001.png".into(), img(1)),
        ("set/train/a/002.png".into(), img(2)),
        ("set/train/a/001.png".into(), img(3)),
        ("set/test/b/x.png".into(), img(4)),
    ];
    for (n, b) in &files {
        write(t.path(), &format!("dir/{n}"), b);
    }
    let z = write(t.path(), "imgs.zip", &zip_bytes(&files));
    for s in [
        format!("folder:{}", t.path().join("dir/set").display()),
        format!("folder:{}", z.display()),
        z.display().to_string(),
    ] {
        let ds = load(&s);
        assert_eq!(ds.len(), 2, "{s}");
        let (test, train) = (&ds[0], &ds[1]); // splits sorted by name
        assert_eq!(
            (test.split.as_str(), train.split.as_str()),
            ("test", "train")
        );
        assert_eq!(train.classes, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(train.shape, [3, 3, 2, 3]);
        // order: class a (001 then 002), then class b
        assert_eq!(train.labels, vec![0, 0, 1]);
        let expect = |k: u32| -> Vec<u8> {
            let mut v = Vec::new();
            for c in 0..3 {
                for y in 0..2 {
                    for x in 0..3 {
                        v.push((10 * k + x + 3 * y + 50 * c) as u8);
                    }
                }
            }
            v
        };
        assert_eq!(train.image(0), &expect(3)[..]);
        assert_eq!(train.image(1), &expect(2)[..]);
        assert_eq!(train.image(2), &expect(1)[..]);
        assert_eq!(test.labels, vec![1]);
        assert_eq!(test.image(0), &expect(4)[..]);
    }
    // a meta file reorders the classes
    write(t.path(), "dir/set/classes.txt", b"b\na\n");
    let ds = load(&format!(
        "folder:{}:train",
        t.path().join("dir/set").display()
    ));
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].classes, vec!["b".to_string(), "a".to_string()]);
    assert_eq!(ds[0].labels, vec![0, 1, 1]);
}

#[test]
fn spec_parsing() {
    let p = |s: &str| DatasetSpec::parse(s).unwrap();
    let s = p("cifar10:/d/x.bin:test");
    assert_eq!(s.kind, Some(Kind::Cifar10));
    assert_eq!(s.path.as_deref(), Some(std::path::Path::new("/d/x.bin")));
    assert_eq!(s.split.as_deref(), Some("test"));
    let s = p("fashion-mnist");
    assert_eq!(
        (s.kind, s.path.clone(), s.split.clone()),
        (Some(Kind::FashionMnist), None, None)
    );
    let s = p("fmnist:train");
    assert_eq!(
        (s.kind, s.path.clone(), s.split.as_deref()),
        (Some(Kind::FashionMnist), None, Some("train"))
    );
    let s = p("fashion-mnist:/x/y:test");
    assert_eq!(s.path.as_deref(), Some(std::path::Path::new("/x/y")));
    let s = p("/data/cifar10-jpeg.zip:test");
    assert_eq!((s.kind, s.split.as_deref()), (None, Some("test")));
    let s = p("/data/test_batch.bin");
    assert_eq!((s.kind, s.split.as_deref()), (None, None));
    let s = p("folder:/d/imgs:val");
    assert_eq!(s.split.as_deref(), Some("val"));
    assert!(DatasetSpec::parse("cifar10").is_err());
    assert!(DatasetSpec::parse("cifar10:/d:validation").is_err());
    assert!(DatasetSpec::parse("").is_err());
}

#[test]
fn subsets() {
    let t = tempfile::tempdir().unwrap();
    let mut b = Vec::new();
    let labels = [0u8, 1, 0, 2, 0, 1, 2, 2, 0];
    for (r, &l) in labels.iter().enumerate() {
        b.extend(cifar10_record(l, r));
    }
    let f = write(t.path(), "d.bin", &b);
    let d = load(&format!("cifar10:{}", f.display())).remove(0);
    let f3 = d.first(3);
    assert_eq!(f3.labels, vec![0, 1, 0]);
    assert!((0..3072).all(|j| f3.image(2)[j] == px(2, j)));
    let bal = d.balanced(2);
    assert_eq!(bal.labels, vec![0, 1, 0, 2, 1, 2]);
    assert!((0..3072).all(|j| bal.image(4)[j] == px(5, j)));
    assert_eq!(d.first(100).len(), 9);
}

#[test]
fn folder_loading_does_not_depend_on_thread_count() {
    let t = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for k in 0..24u32 {
        let class = ["x", "y", "z"][(k % 3) as usize];
        files.push((
            format!("s/train/{class}/{k:03}.png"),
            png(5, 3, move |x, y, c| (k * 9 + x * 5 + y + 40 * c) as u8),
        ));
    }
    let z = write(t.path(), "f.zip", &zip_bytes(&files));
    let spec = format!("folder:{}", z.display());
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let a = one.install(|| load(&spec));
    let b = three.install(|| load(&spec));
    assert_eq!(a, b);
    assert_eq!(a[0].class_counts(), vec![8, 8, 8]);
    // image 1 is class x's second file, k = 3: pixel (0,0) of channel 1 = 27 + 40
    assert_eq!(a[0].image(1)[15], 67);
}
