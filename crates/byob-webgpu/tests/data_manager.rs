//! The GPU data manager: every operation, its errors and its counters.

mod common;

use byob_webgpu::{GpuContext, GpuDataManager, GpuError, UploadPath};
use common::{context, manager};
use std::sync::Arc;

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(bytes)
}

#[test]
fn upload_and_download_round_trip_on_both_paths() {
    for path in [UploadPath::Auto, UploadPath::WriteBuffer, UploadPath::Staging] {
        let data = GpuDataManager::with_upload_path(context(), path);
        for len in [0usize, 1, 7, 16, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let id = data.create(len as u64).unwrap();
            data.upload(id, &bytes).unwrap();
            assert_eq!(pollster::block_on(data.download(id)).unwrap(), bytes, "{path:?}, {len} bytes");
        }
    }
    let staged = GpuDataManager::with_upload_path(context(), UploadPath::Staging);
    let id = staged.create(8).unwrap();
    staged.upload(id, &[1; 8]).unwrap();
    assert_eq!(staged.counters().staging_allocations, 1);
    // Auto stages large uploads only.
    let auto = manager();
    let (small, large) = (auto.create(8).unwrap(), auto.create(byob_webgpu::STAGING_THRESHOLD).unwrap());
    auto.upload(small, &[1; 8]).unwrap();
    assert_eq!(auto.counters().staging_allocations, 0);
    auto.upload(large, &vec![2; byob_webgpu::STAGING_THRESHOLD as usize]).unwrap();
    assert_eq!(auto.counters().staging_allocations, 1);
}

#[test]
fn sizes_are_normalised_to_16_bytes() {
    let data = manager();
    for (size, normalised) in [(0, 16), (1, 16), (16, 16), (17, 32), (100, 112)] {
        let id = data.create(size).unwrap();
        let (buffer, recorded) = data.get(id).unwrap();
        assert_eq!((buffer.size(), recorded), (normalised, size));
    }
}

#[test]
fn memcpy_copies_and_checks_sizes() {
    let data = manager();
    let (a, b, c) = (data.create(12).unwrap(), data.create(12).unwrap(), data.create(16).unwrap());
    data.upload(a, bytemuck::cast_slice(&[1.0f32, 2.0, 3.0])).unwrap();
    data.memcpy(a, b).unwrap();
    assert_eq!(floats(&pollster::block_on(data.download(b)).unwrap()), [1.0, 2.0, 3.0]);
    match data.memcpy(a, c) {
        Err(GpuError::SizeMismatch { expected: 16, actual: 12, what }) => assert!(what.contains(&a.to_string()) && what.contains(&c.to_string()), "{what}"),
        other => panic!("{other:?}"),
    }
    data.memcpy(a, a).unwrap();
}

#[test]
fn unknown_ids_and_wrong_sizes_are_errors() {
    let data = manager();
    let id = data.create(8).unwrap();
    let other = data.create(8).unwrap();
    assert_eq!(data.release(id), Ok(8));
    assert_eq!(data.get(id).unwrap_err(), GpuError::UnknownBuffer(id));
    assert_eq!(data.upload(id, &[0; 8]).unwrap_err(), GpuError::UnknownBuffer(id));
    assert_eq!(data.memcpy(id, other).unwrap_err(), GpuError::UnknownBuffer(id));
    assert_eq!(data.memcpy(other, id).unwrap_err(), GpuError::UnknownBuffer(id));
    assert_eq!(data.release(id).unwrap_err(), GpuError::UnknownBuffer(id));
    assert_eq!(pollster::block_on(data.download(id)).unwrap_err(), GpuError::UnknownBuffer(id));
    let error = data.upload(other, &[0; 7]).unwrap_err();
    assert!(matches!(error, GpuError::SizeMismatch { expected: 8, actual: 7, .. }), "{error:?}");
    assert!(error.to_string().contains(&other.to_string()), "{error}");
    assert!(GpuError::UnknownBuffer(id).to_string().contains("unknown GPU buffer"));
}

#[test]
fn released_buffers_are_reused_only_after_submission() {
    let data = manager();
    let first = data.create(100).unwrap();
    data.release(first).unwrap();
    // Commands recorded before may still use it: not reusable yet.
    let second = data.create(100).unwrap();
    assert_eq!((data.counters().allocations, data.counters().reuse_hits), (2, 0));
    data.refresh_pending_buffers();
    // Same normalised size (112 bytes): the cached buffer.
    let third = data.create(97).unwrap();
    assert_eq!((data.counters().allocations, data.counters().reuse_hits), (2, 1));
    // A different size does not take it.
    data.release(third).unwrap();
    data.submit().unwrap();
    data.create(200).unwrap();
    assert_eq!((data.counters().allocations, data.counters().reuse_hits), (3, 1));
    data.release(second).unwrap();
    data.trim();
    assert_eq!(data.counters().cached_bytes, 112, "the pending buffer outlives trim");
}

#[test]
fn counters_track_live_and_peak_bytes() {
    let data = manager();
    let a = data.create(64).unwrap();
    let b = data.create(30).unwrap();
    let c = data.counters();
    assert_eq!((c.live_bytes, c.peak_bytes, c.allocations), (96, 96, 2));
    data.release(a).unwrap();
    let c = data.counters();
    assert_eq!((c.live_bytes, c.peak_bytes, c.cached_bytes), (32, 96, 64));
    data.submit().unwrap();
    data.create(64).unwrap();
    data.release(b).unwrap();
    let c = data.counters();
    assert_eq!((c.live_bytes, c.peak_bytes, c.cached_bytes, c.reuse_hits), (64, 96, 32, 1));
}

#[test]
fn concurrent_downloads_share_one_transfer() {
    let data = manager();
    // Large enough that the copy cannot finish between the two requests.
    let values: Vec<f32> = (0..4 << 20).map(|i| i as f32).collect();
    let id = data.create(4 * values.len() as u64).unwrap();
    data.upload(id, bytemuck::cast_slice(&values)).unwrap();
    let (first, second) = (data.download(id), data.download(id));
    assert_eq!(data.counters().downloads, 1);
    let (first, second) = pollster::block_on(async { (first.await.unwrap(), second.await.unwrap()) });
    assert_eq!(first, second);
    assert_eq!(floats(&first), values);
    // Once complete, a new download reads afresh (and reuses the staging buffer).
    data.upload(id, bytemuck::cast_slice(&vec![2.0f32; values.len()])).unwrap();
    let staging = data.counters().staging_allocations;
    assert_eq!(floats(&pollster::block_on(data.download(id)).unwrap())[..2], [2.0, 2.0]);
    assert_eq!((data.counters().downloads, data.counters().staging_allocations), (2, staging));
}

#[test]
fn downloads_from_threads_agree() {
    let data = manager();
    let id = data.create(4000).unwrap();
    let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
    data.upload(id, bytemuck::cast_slice(&values)).unwrap();
    let results: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| pollster::block_on(data.download(id)).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|r| floats(r) == values));
}

#[test]
fn external_buffers_are_bound_in_place_and_never_cached() {
    let ctx = context();
    let data = GpuDataManager::new(Arc::clone(&ctx));
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = Arc::new(ctx.device().create_buffer(&wgpu::BufferDescriptor { label: Some("caller's"), size: 64, usage, mapped_at_creation: false }));
    let error = data.register_external_buffer(Arc::clone(&buffer), 65).unwrap_err();
    assert!(matches!(error, GpuError::SizeMismatch { expected: 64, actual: 65, .. }), "{error:?}");
    let external = data.register_external_buffer(Arc::clone(&buffer), 40).unwrap();
    assert!(Arc::ptr_eq(&data.get(external).unwrap().0, &buffer));
    data.upload(external, &[5; 40]).unwrap();
    let managed = data.create(40).unwrap();
    data.memcpy(external, managed).unwrap();
    assert_eq!(pollster::block_on(data.download(managed)).unwrap(), [5; 40]);
    data.upload(managed, &[9; 40]).unwrap();
    data.memcpy(managed, external).unwrap();
    assert_eq!(pollster::block_on(data.download(external)).unwrap(), [9; 40]);
    let before = data.counters();
    assert_eq!(data.release(external), Ok(40));
    data.submit().unwrap();
    let after = data.counters();
    assert_eq!((after.cached_bytes, after.live_bytes, after.allocations), (before.cached_bytes, before.live_bytes, 1));
    // The caller's buffer is untouched by the release.
    assert_eq!(buffer.size(), 64);
}

#[test]
fn validation_errors_are_captured_not_panics() {
    let ctx = context();
    let bad = wgpu::BufferDescriptor { label: None, size: 16, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE, mapped_at_creation: false };
    let error = ctx.scoped("creating a bad buffer", || ctx.device().create_buffer(&bad)).unwrap_err();
    assert!(matches!(&error, GpuError::Validation { what, .. } if what == "creating a bad buffer"), "{error:?}");
    assert!(!error.is_fatal());
    ctx.check().unwrap();
}

#[test]
fn a_lost_device_fails_later_calls() {
    let ctx = Arc::new(pollster::block_on(GpuContext::new()).unwrap());
    let data = GpuDataManager::new(Arc::clone(&ctx));
    let id = data.create(16).unwrap();
    ctx.device().destroy();
    let _ = ctx.device().poll(wgpu::PollType::Poll);
    let error = data.create(16).unwrap_err();
    assert!(matches!(error, GpuError::DeviceLost(_)), "{error:?}");
    assert!(error.is_fatal());
    assert!(matches!(data.submit(), Err(GpuError::DeviceLost(_))) || data.upload(id, &[0; 16]).is_err());
}

#[test]
fn the_adapter_is_described() {
    let ctx = context();
    assert!(!ctx.describe().is_empty());
    assert!(ctx.limits().min_storage_buffer_offset_alignment >= 4);
}
