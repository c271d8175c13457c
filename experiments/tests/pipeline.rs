//! The input pipeline: augmentation properties, normalization, deterministic seeded batches.

use experiments::data::{Augment, Dataset, Loader, Normalization, PaddingMode};
use sim::Stream;

/// A synthetic dataset of n RGB 4x5 images, pixel value = 3·i + c + 7·y + x (mod 256).
fn synth(n: usize) -> Dataset {
    let (c, h, w) = (3, 4, 5);
    let mut images = Vec::new();
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    images.push(((3 * i + ch + 7 * y + x) % 256) as u8);
                }
            }
        }
    }
    Dataset {
        name: "synth".into(),
        split: "train".into(),
        source: "memory".into(),
        images,
        shape: [n, c, h, w],
        labels: (0..n).map(|i| (i % 3) as u16).collect(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        coarse: None,
    }
}

#[test]
fn crop_with_zero_padding_is_identity_and_flip_twice_is_identity() {
    let d = synth(2);
    let img = d.image(1);
    for mode in [PaddingMode::Zero, PaddingMode::Edge] {
        let a = Augment {
            crop_padding: 0,
            padding_mode: mode,
            hflip: true,
        };
        assert_eq!(a.apply(img, [3, 4, 5], 0, 0, false), img);
        let f = a.apply(img, [3, 4, 5], 0, 0, true);
        assert_ne!(f, img);
        assert_eq!(a.apply(&f, [3, 4, 5], 0, 0, true), img);
        // centre crop of a padded image is the identity too
        let a4 = Augment {
            crop_padding: 4,
            padding_mode: mode,
            hflip: false,
        };
        assert_eq!(a4.apply(img, [3, 4, 5], 4, 4, false), img);
    }
}

#[test]
fn flip_mirrors_rows() {
    // one channel 2x3: [[1,2,3],[4,5,6]]
    let img = [1u8, 2, 3, 4, 5, 6];
    let a = Augment {
        crop_padding: 0,
        padding_mode: PaddingMode::Zero,
        hflip: true,
    };
    assert_eq!(a.apply(&img, [1, 2, 3], 0, 0, true), vec![3, 2, 1, 6, 5, 4]);
}

#[test]
fn crop_padding_modes_by_hand() {
    // one channel 3x3: 1..9; padding 1; offset (0, 0) shifts the window up-left by one pixel.
    let img = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
    let zero = Augment {
        crop_padding: 1,
        padding_mode: PaddingMode::Zero,
        hflip: false,
    };
    assert_eq!(
        zero.apply(&img, [1, 3, 3], 0, 0, false),
        vec![0, 0, 0, 0, 1, 2, 0, 4, 5]
    );
    let edge = Augment {
        crop_padding: 1,
        padding_mode: PaddingMode::Edge,
        hflip: false,
    };
    assert_eq!(
        edge.apply(&img, [1, 3, 3], 0, 0, false),
        vec![1, 1, 2, 1, 1, 2, 4, 4, 5]
    );
    // offset (2, 1): window moved down by one row, columns unchanged
    assert_eq!(
        edge.apply(&img, [1, 3, 3], 2, 1, false),
        vec![4, 5, 6, 7, 8, 9, 7, 8, 9]
    );
    // padding 2, offset (0, 4): up two, right two
    let edge2 = Augment {
        crop_padding: 2,
        padding_mode: PaddingMode::Edge,
        hflip: false,
    };
    assert_eq!(
        edge2.apply(&img, [1, 3, 3], 0, 4, false),
        vec![3, 3, 3, 3, 3, 3, 3, 3, 3]
    );
    // crop then flip: flip of the cropped window
    let edge_f = Augment {
        crop_padding: 1,
        padding_mode: PaddingMode::Edge,
        hflip: true,
    };
    assert_eq!(
        edge_f.apply(&img, [1, 3, 3], 0, 0, true),
        vec![2, 1, 1, 2, 1, 1, 5, 4, 4]
    );
}

#[test]
fn draws_cover_the_range_and_flip_about_half() {
    let a = Augment::cifar();
    let s = Stream::new(7, "augment-test");
    let mut seen = [false; 9];
    let mut flips = 0;
    for i in 0..4000 {
        let (dy, dx, f) = a.draws(&s, i);
        assert!(dy <= 8 && dx <= 8);
        seen[dy] = true;
        seen[dx] = true;
        flips += f as usize;
    }
    assert!(seen.iter().all(|&b| b), "{seen:?}");
    assert!((1800..2200).contains(&flips), "{flips} flips of 4000");
}

#[test]
fn normalization_values() {
    let d = synth(1);
    let n = Normalization::new(vec![0.5, 0.0, 1.0], vec![0.5, 1.0, 2.0]).unwrap();
    let l = Loader::new(&d, 1, Stream::new(0, "data"))
        .normalize(n)
        .unwrap();
    let b = l.epoch(0).next().unwrap();
    assert_eq!(b.x.shape(), &[1, 3, 4, 5]);
    // channel 0, (y,x)=(1,2): v = 0+0+7+2 = 9 → (9/255 − 0.5)/0.5
    let want0 = (9.0f32 / 255.0 - 0.5) / 0.5;
    assert!((b.x[[0, 0, 1, 2]] - want0).abs() < 1e-6);
    // channel 2, (0,0): v = 2 → (2/255 − 1)/2
    assert!((b.x[[0, 2, 0, 0]] - (2.0f32 / 255.0 - 1.0) / 2.0).abs() < 1e-6);
    assert!(Normalization::new(vec![0.0], vec![0.0]).is_err());
    assert!(Normalization::new(vec![0.0, 1.0], vec![1.0]).is_err());
    let gray = Normalization::new(vec![0.5], vec![0.5]).unwrap();
    assert!(
        Loader::new(&d, 1, Stream::new(0, "data"))
            .normalize(gray)
            .is_err()
    );
    // computed statistics normalize the dataset to mean 0, std 1 per channel
    let d = synth(50);
    let n = Normalization::from_dataset(&d);
    let l = Loader::new(&d, 50, Stream::new(0, "data"))
        .normalize(n)
        .unwrap();
    let x = l.epoch(0).next().unwrap().x;
    for c in 0..3 {
        let v: Vec<f32> = x.index_axis(ndarray::Axis(1), c).iter().copied().collect();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / v.len() as f32;
        assert!(
            m.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "channel {c}: {m} {var}"
        );
    }
}

fn epoch_batches(d: &Dataset, seed: u64, epoch: u64) -> Vec<(Vec<f32>, Vec<usize>)> {
    Loader::new(d, 16, Stream::new(seed, "data"))
        .shuffle(true)
        .augment(Some(Augment::cifar()))
        .epoch(epoch)
        .map(|b| (b.x.iter().copied().collect(), b.y))
        .collect()
}

#[test]
fn same_seed_same_batches_whatever_the_thread_count() {
    let d = synth(100);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let a = one.install(|| epoch_batches(&d, 5, 2));
    let b = three.install(|| epoch_batches(&d, 5, 2));
    assert_eq!(a.len(), 7); // 100 / 16 rounded up
    assert_eq!(a[6].1.len(), 4);
    assert!(a == b, "batches differ between 1 and 3 threads");
    // different seed: different order
    let c = epoch_batches(&d, 6, 2);
    assert_ne!(a[0].1, c[0].1);
    // different epoch: different order
    let e = epoch_batches(&d, 5, 3);
    assert_ne!(a[0].1, e[0].1);
}

#[test]
fn epoch_is_a_permutation_and_augmentation_is_per_sample() {
    let d = synth(40);
    let l = Loader::new(&d, 8, Stream::new(1, "data"))
        .shuffle(true)
        .augment(Some(Augment::cifar()));
    let mut all: Vec<usize> = l.epoch(0).flat_map(|b| b.indices).collect();
    assert_ne!(all, (0..40).collect::<Vec<_>>());
    all.sort();
    assert_eq!(all, (0..40).collect::<Vec<_>>());
    // The augmented image of sample i depends on (seed, epoch, i) only, not on its batch:
    // compare with a batch of that sample alone.
    let b = l.epoch(0).nth(1).unwrap();
    let i = b.indices[3];
    let alone = l.make_batch(0, &[i]);
    let row: Vec<f32> =
        b.x.index_axis(ndarray::Axis(0), 3)
            .iter()
            .copied()
            .collect();
    let want: Vec<f32> = alone.x.iter().copied().collect();
    assert_eq!(row, want);
    // labels follow the indices
    assert_eq!(b.y, b.indices.iter().map(|&i| i % 3).collect::<Vec<_>>());
    // no shuffle: dataset order, drop_last drops the partial batch
    let l = Loader::new(&d, 16, Stream::new(1, "data")).drop_last(true);
    let idx: Vec<Vec<usize>> = l.epoch(0).map(|b| b.indices).collect();
    assert_eq!(idx, vec![(0..16).collect::<Vec<_>>(), (16..32).collect()]);
}
