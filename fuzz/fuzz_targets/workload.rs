//! What workload identity reads from the node: container runtimes' process
//! arguments (conmon, containerd shims), OCI `config.json`,
//! containers/storage's `containers.json` and `storage.conf`, the kubelet's log names and image
//! references. The first byte picks the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomscope::workload::{image, kubelet, oci, procs, storage};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 5 {
        0 => {
            let argv = procs::split_argv(rest);
            let _ = procs::parse_runtime(1, &argv, None);
        }
        1 => {
            if let Some(spec) = oci::parse_spec(rest) {
                let mut w = oomscope::workload::Workload::default();
                oci::apply_containerd_cri(&mut w, &spec);
                oci::apply_crio(&mut w, &spec);
                let _ = oci::is_sandbox(&spec);
                let _ = oci::docker_data_root(&spec, "0123");
                let _ = w.resource_attributes();
            }
        }
        2 => {
            let _ = storage::parse_containers_json(rest);
            let _ = storage::parse_storage_conf(&String::from_utf8_lossy(rest));
        }
        3 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = kubelet::parse_pod_dir(text);
                let _ = kubelet::parse_container_link(text);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let (name, tags) = image::split_image(text);
                assert!(name.len() <= text.len());
                assert!(tags.len() <= 1);
            }
        }
    }
});
