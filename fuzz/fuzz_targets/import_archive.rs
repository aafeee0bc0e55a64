//! Any bytes as an archive: the importer must return (never panic, never hang) and must write
//! nothing outside the directory it unpacks into.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pookie_ns::import::{unpack_archive, ImportOptions};

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::write(&archive, data).unwrap();
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let opts = ImportOptions {
        keep_owners: false,
        create_devices: false,
        keep_setid: false,
        max_entries: 256,
    };
    let _ = unpack_archive(&archive, &root, &opts, &mut |_| {});
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "the archive wrote outside its root"
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "the archive wrote beside its root: {names:?}"
    );
    // Read-only directories from the archive would stop the temp dir's removal.
    make_writable(&root);
});

fn make_writable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&e.path());
        }
    }
}
