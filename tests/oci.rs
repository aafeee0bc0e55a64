//! OCI images as base OSes, through the real command against a real registry: Debian's
//! `docker-registry` (the CNCF distribution registry) started here on 127.0.0.1 with a free
//! port, images written here as OCI layouts from the busybox fixtures and pushed with `skopeo`.
//! Covers: a two-arch index (amd64, arm64), whiteouts and an opaque directory, the blob cache,
//! `update-baseos` by digest, basic auth, a manylinux-like `/opt/python`, the archive transports,
//! the image's `User`, a `build` of examples/c-ext inside a manylinux-like and a musllinux-like
//! image pulled on first use, pulls killed half-way, and hostile images — each refused with exit status 2 and nothing
//! left in the store. (The pull benchmark is row 6 of bench/run.)

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixtures, is_root, require, stderr, Runner, Who};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Root (the runner switches to the test users), docker-registry, skopeo and htpasswd.
fn prerequisites() -> bool {
    require(
        is_root(),
        "the OCI tests run as root (and switch to the test users)",
    ) && require(
        have("docker-registry") && have("skopeo") && have("htpasswd"),
        "docker-registry, skopeo and apache2-utils (scripts/setup-host installs them)",
    )
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar layer made entry by entry: (name, contents) — a name ending in `/` is a directory, a
/// contents starting with `->` a symlink.
fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, contents) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, name, &[][..]).unwrap();
        } else if let Some(target) = contents.strip_prefix("->") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o755);
            h.set_size(contents.len() as u64);
            b.append_data(&mut h, name, contents.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// The busybox rootfs of an arch as an uncompressed tar.
fn busybox_tar(debian_arch: &str) -> Option<Vec<u8>> {
    let f = fixtures();
    let archive = if debian_arch == "amd64" {
        f.archive("tar")
    } else {
        f.foreign(debian_arch)?
    };
    let bytes = std::fs::read(&archive).unwrap();
    if archive.extension().is_some_and(|e| e == "zst") {
        Some(zstd::decode_all(&bytes[..]).unwrap())
    } else {
        Some(bytes)
    }
}

/// An OCI image layout written blob by blob.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// Stores a blob; returns its descriptor.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let hex = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
    }

    fn path_of(&self, desc: &Value) -> PathBuf {
        let d = desc["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        self.dir.join("blobs/sha256").join(d)
    }

    /// An image manifest with these layers (media type, bytes) whose config names `user` as its
    /// `User`; returns its descriptor with the platform set.
    fn image(
        &self,
        arch: &str,
        variant: Option<&str>,
        layers: &[(&str, Vec<u8>)],
        env: &[&str],
        user: &str,
    ) -> Value {
        let layer_descs: Vec<Value> = layers.iter().map(|(t, b)| self.blob(t, b)).collect();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|(t, b)| {
                if *t == LAYER_GZIP {
                    let mut d = flate2::read::GzDecoder::new(&b[..]);
                    let mut raw = Vec::new();
                    std::io::Read::read_to_end(&mut d, &mut raw).unwrap();
                    format!("sha256:{}", sha256(&raw))
                } else if *t == LAYER_ZSTD {
                    let mut h = Sha256::new();
                    let mut d = zstd::stream::read::Decoder::new(&b[..]).unwrap();
                    std::io::copy(&mut d, &mut h).unwrap();
                    format!("sha256:{:x}", h.finalize())
                } else {
                    format!("sha256:{}", sha256(b))
                }
            })
            .collect();
        let mut platform = json!({"os": "linux", "architecture": arch});
        let mut config = json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": env, "WorkingDir": "/work", "User": user},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = variant {
            platform["variant"] = json!(v);
            config["variant"] = json!(v);
        }
        let config = self.blob(OCI_CONFIG, config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": config, "layers": layer_descs,
        });
        let mut desc = self.blob(OCI_MANIFEST, manifest.to_string().as_bytes());
        desc["platform"] = platform;
        desc
    }

    /// index.json naming each descriptor with its tag.
    fn finish(&self, tagged: &[(&str, Value)]) {
        let manifests: Vec<Value> = tagged
            .iter()
            .map(|(tag, d)| {
                let mut d = d.clone();
                d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }

    /// A multi-arch index blob over image descriptors; returns its descriptor.
    fn index(&self, images: &[Value]) -> Value {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": images});
        self.blob(OCI_INDEX, index.to_string().as_bytes())
    }
}

/// A registry on 127.0.0.1, stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap();
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: pookie-test\n    path: {}\n",
                file.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            port,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn reference(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host())
    }

    /// `skopeo copy --all oci:DIR:TAG docker://HOST/REPO:TAG`.
    fn push(&self, layout: &Path, tag: &str, repo_tag: &str, creds: Option<&str>) {
        let mut c = Command::new("skopeo");
        c.args([
            "--insecure-policy",
            "copy",
            "--all",
            "--dest-tls-verify=false",
        ]);
        if let Some(creds) = creds {
            c.args(["--dest-creds", creds]);
        }
        c.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(self.reference(repo_tag));
        let out = c.output().unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
    }
}

/// The whiteout layout (made under `tmp`) pushed as `repo_tag` to a fresh registry, which asks
/// for `auth` when given: the registry, the reference to pull and its host for
/// `--insecure-registry`.
fn whiteout_pushed(
    tmp: &Path,
    auth: Option<(&str, &str)>,
    repo_tag: &str,
) -> (Registry, String, String) {
    let layout = whiteout_layout(&tmp.join("layout"));
    let reg = Registry::start(auth);
    let creds = auth.map(|(u, p)| format!("{u}:{p}"));
    reg.push(&layout.dir, "v1", repo_tag, creds.as_deref());
    let reference = reg.reference(repo_tag);
    let host = reg.host();
    (reg, reference, host)
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `load-baseos REFERENCE EXTRA… --insecure-registry HOST`: a pull from a test registry (plain
/// HTTP on the loopback).
fn registry_pull<'a>(reference: &'a str, extra: &[&'a str], host: &'a str) -> Vec<&'a str> {
    let mut args = vec!["load-baseos", reference];
    args.extend_from_slice(extra);
    args.extend(["--insecure-registry", host]);
    args
}

fn read_meta(r: &Runner, name: &str, arch: &str) -> Value {
    let p = r
        .store
        .join("baseos")
        .join(name)
        .join(arch)
        .join("meta.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn rootfs(r: &Runner, name: &str, arch: &str) -> PathBuf {
    r.store.join("baseos").join(name).join(arch).join("rootfs")
}

/// Nothing of a failed load is left: no base OS, no scratch dir.
fn store_is_empty(r: &Runner) {
    let listing = |d: &str| -> Vec<String> {
        std::fs::read_dir(r.store.join(d))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(listing("baseos"), Vec::<String>::new(), "baseos/");
    assert_eq!(listing("tmp"), Vec::<String>::new(), "tmp/");
}

/// The extra layers over busybox: a tree, then whiteouts of part of it and an opaque directory
/// (its new file written before the marker, which must survive it).
fn whiteout_layers() -> Vec<(&'static str, Vec<u8>)> {
    let a = layer(&[
        ("work/", ""),
        ("data/", ""),
        ("data/keep/", ""),
        ("data/keep/a", "kept\n"),
        ("data/gone/", ""),
        ("data/gone/x", "x\n"),
        ("data/file-to-delete", "bye\n"),
        ("data/opq/", ""),
        ("data/opq/old1", "old\n"),
        ("data/opq/sub/", ""),
        ("data/opq/sub/old2", "old\n"),
        ("data/dir-to-link/", ""),
        ("data/dir-to-link/f", "f\n"),
    ]);
    let b = layer(&[
        ("data/.wh.gone", ""),
        ("data/.wh.file-to-delete", ""),
        ("data/opq/", ""),
        ("data/opq/new", "new\n"),
        ("data/opq/.wh..wh..opq", ""),
        ("data/keep/b", "added\n"),
        // A directory of the layer below becomes a symlink.
        ("data/dir-to-link", "->keep"),
    ]);
    vec![(LAYER_GZIP, gzip(&a)), (LAYER_TAR, b)]
}

fn check_whiteouts(root: &Path) {
    assert_eq!(
        std::fs::read_to_string(root.join("data/keep/a")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/keep/b")).unwrap(),
        "added\n"
    );
    assert!(!root.join("data/gone").exists(), "whiteout of a directory");
    assert!(
        !root.join("data/file-to-delete").exists(),
        "whiteout of a file"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/opq/new")).unwrap(),
        "new\n"
    );
    assert!(
        !root.join("data/opq/old1").exists(),
        "opaque dir hides the lower layer"
    );
    assert!(
        !root.join("data/opq/sub").exists(),
        "opaque dir hides the lower layer"
    );
    for d in ["data", "data/opq"] {
        for e in std::fs::read_dir(root.join(d)).unwrap() {
            let n = e.unwrap().file_name();
            assert!(
                !n.to_string_lossy().starts_with(".wh."),
                "marker {n:?} left in {d}"
            );
        }
    }
    assert_eq!(
        std::fs::read_link(root.join("data/dir-to-link")).unwrap(),
        Path::new("keep")
    );
    assert!(root.join("bin/busybox").is_file());
}

/// A layout with the busybox image plus the whiteout layers, tagged `v1`.
fn whiteout_layout(dir: &Path) -> Layout {
    let l = Layout::new(dir);
    let mut layers = vec![(LAYER_GZIP, gzip(&busybox_tar("amd64").unwrap()))];
    layers.extend(whiteout_layers());
    let img = l.image(
        "amd64",
        None,
        &layers,
        &["PATH=/usr/bin:/bin", "IMAGE_VAR=from-config"],
        "0:0",
    );
    l.finish(&[("v1", img)]);
    l
}

fn names_under(root: &Path) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && find . | sort", root.display()))
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn oci_layout_applies_whiteouts_and_records_the_image() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = whiteout_layout(&tmp.path().join("layout"));
    let r = Runner::new(Who::Root);
    let src = format!("oci:{}:v1", layout.dir.display());
    r.ok(&["load-baseos", &src, "--name", "wh"]);
    let root = rootfs(&r, "wh", "amd64");
    check_whiteouts(&root);
    let meta = read_meta(&r, "wh", "amd64");
    let image = &meta["image"];
    assert!(image["manifest_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(image["working_dir"], "/work");
    assert_eq!(image["user"], "0:0");
    assert_eq!(image["layers"].as_array().unwrap().len(), 3);
    assert_eq!(meta["whiteouts"], 3);
    // run starts commands with the image's Env and WorkingDir.
    let out = r.sh_ok("wh", "echo $IMAGE_VAR; pwd");
    assert_eq!(out, "from-config\n/work\n");
    let list = r.ok(&["list"]);
    assert!(
        list.contains(image["manifest_digest"].as_str().unwrap()),
        "{list}"
    );

    // The same image as an oci-archive and as a docker-archive (made by skopeo) loads the same
    // tree.
    let archive = tmp.path().join("image.oci.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout.dir)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    r.ok(&[
        "load-baseos",
        &format!("oci-archive:{}", archive.display()),
        "--name",
        "wh-oci-archive",
    ]);
    let docker = tmp.path().join("image.docker.tar");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy"])
        .arg(&src)
        .arg(format!("docker-archive:{}:wh:v1", docker.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    r.ok(&[
        "load-baseos",
        &format!("docker-archive:{}", docker.display()),
        "--name",
        "wh-docker-archive",
    ]);
    // And pulled from a registry.
    let reg = Registry::start(None);
    reg.push(&layout.dir, "v1", "test/wh:v1", None);
    r.ok(&registry_pull(
        &reg.reference("test/wh:v1"),
        &["--name", "wh-registry"],
        &reg.host(),
    ));
    let want = names_under(&root);
    for name in ["wh-oci-archive", "wh-docker-archive", "wh-registry"] {
        let other = rootfs(&r, name, "amd64");
        assert_eq!(names_under(&other), want, "{name}");
        check_whiteouts(&other);
        assert_eq!(
            common::hash_tree(&other.join("data")),
            common::hash_tree(&root.join("data")),
            "{name}"
        );
    }
}

#[test]
fn registry_pull_picks_the_arch_caches_blobs_and_updates_by_digest() {
    if !prerequisites() {
        return;
    }
    let Some(arm64) = busybox_tar("arm64") else {
        require(
            false,
            "busybox-arm64 in /var/cache/pookie-ns-test (scripts/setup-host)",
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let l = Layout::new(&tmp.path().join("multi"));
    let amd = l.image(
        "amd64",
        None,
        &[(LAYER_GZIP, gzip(&busybox_tar("amd64").unwrap()))],
        &[],
        "0:0",
    );
    let arm = l.image(
        "arm64",
        Some("v8"),
        &[(LAYER_GZIP, gzip(&arm64))],
        &[],
        "0:0",
    );
    let index = l.index(&[amd, arm]);
    l.finish(&[("v1", index)]);
    // The layout itself: index.json -> the two-arch index -> the arm64 manifest.
    let local = Runner::new(Who::Root);
    let out = local.run(&[
        "load-baseos",
        &format!("oci:{}:v1", l.dir.display()),
        "--arch",
        "armv7l",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no image for armhf (linux/arm/v7)"),
        "{}",
        stderr(&out)
    );
    local.ok(&[
        "load-baseos",
        &format!("oci:{}:v1", l.dir.display()),
        "--arch",
        "arm64",
    ]);
    assert_eq!(
        read_meta(&local, "multi-v1", "arm64")["image"]["platform"],
        "linux/arm64/v8"
    );
    let reg = Registry::start(None);
    reg.push(&l.dir, "v1", "multi/busybox:v1", None);
    let reference = reg.reference("multi/busybox:v1");
    let host = reg.host();

    let r = Runner::new(Who::Root);
    let load = |arch: &str, name: &str| {
        r.run(&registry_pull(
            &reference,
            &["--arch", arch, "--name", name],
            &host,
        ))
    };
    let out = load("arm64", "multi");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_meta(&r, "multi", "arm64")["arch"], "arm64");
    let out = load("amd64", "multi");
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = read_meta(&r, "multi", "amd64")["image"]["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blobs = r.store.join("blobs/sha256");
    assert_eq!(
        std::fs::read_dir(&blobs).unwrap().count(),
        2,
        "two layers cached"
    );

    // An arch the index lacks: exit 2, the arches it has listed.
    let out = load("riscv64", "multi");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("linux/amd64") && err.contains("linux/arm64/v8"),
        "{err}"
    );

    // A second pull of the same digest downloads no blob: the layer comes from the cache.
    let out = r.run(&registry_pull(
        &reference,
        &["-v", "--arch", "amd64", "--name", "again"],
        &host,
    ));
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("0 B downloaded, 1 from the cache"),
        "{}",
        stderr(&out)
    );
    // A cached blob damaged on disk (same size) is noticed and downloaded again: the amd64
    // image's own layer (the cache holds the arm64 one too, and read_dir's order depends on the
    // digests).
    let amd64_layer = read_meta(&r, "multi", "amd64")["image"]["layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    let cached = blobs.join(amd64_layer.trim_start_matches("sha256:"));
    assert!(cached.is_file(), "{} cached", cached.display());
    let mut bytes = std::fs::read(&cached).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&cached, &bytes).unwrap();
    let out = load("amd64", "damaged");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is damaged: downloading it again"),
        "{}",
        stderr(&out)
    );

    // update-baseos: the same digest is no change; a new push under the tag is swapped in.
    let update_multi = || {
        r.run(&[
            "update-baseos",
            "--name",
            "multi",
            "--arch",
            "amd64",
            "--insecure-registry",
            &host,
        ])
    };
    let out = update_multi();
    assert!(out.status.success());
    assert!(stderr(&out).contains("up to date"), "{}", stderr(&out));
    let l2 = Layout::new(&tmp.path().join("multi2"));
    let amd2 = l2.image(
        "amd64",
        None,
        &[
            (LAYER_GZIP, gzip(&busybox_tar("amd64").unwrap())),
            (LAYER_TAR, layer(&[("etc/", ""), ("etc/version", "2\n")])),
        ],
        &[],
        "0:0",
    );
    l2.finish(&[("v1", amd2)]);
    reg.push(&l2.dir, "v1", "multi/busybox:v1", None);
    let out = update_multi();
    assert!(out.status.success(), "{}", stderr(&out));
    let new_digest = read_meta(&r, "multi", "amd64")["image"]["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_digest, digest);
    assert_eq!(
        std::fs::read_to_string(rootfs(&r, "multi", "amd64").join("etc/version")).unwrap(),
        "2\n"
    );
    // Without --insecure-registry the loopback registry is spoken to over HTTPS, and refused.
    let out = r.run(&["load-baseos", &reference, "--name", "tls"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--insecure-registry"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unprivileged_pull_with_credentials() {
    if !prerequisites() {
        return;
    }
    if !require(
        common::user_exists(common::SUB_USER),
        "test user pookie-sub (scripts/setup-host)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_registry, reference, host) =
        whiteout_pushed(tmp.path(), Some(("pookie", "s3cret")), "private/wh:v1");
    let r = Runner::new(Who::SubUser);
    let args = registry_pull(&reference, &["--name", "wh"], &host);

    // Each pull reads the credentials from `auth`; a refused one exits 2 with each of `expect` in
    // its message and leaves the store empty.
    let auth = tmp.path().join("auth.json");
    let pull = |runner: &Runner| {
        let mut c = runner.command(&args);
        c.env("REGISTRY_AUTH_FILE", &auth);
        c.output().unwrap()
    };
    let refused = |expect: &[&str]| {
        let out = pull(&r);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        for e in expect {
            assert!(stderr(&out).contains(e), "{}", stderr(&out));
        }
        store_is_empty(&r);
    };

    // No credentials: 401, exit 2, the files searched named.
    refused(&["credentials tried: none", auth.to_str().unwrap()]);

    // Bad credentials: exit 2, the user and file named.
    let write_auth = |user_pass: &str| {
        let b64 = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s '{user_pass}' | base64"))
            .output()
            .unwrap();
        let b64 = String::from_utf8(b64.stdout).unwrap();
        std::fs::write(
            &auth,
            format!(r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#, b64.trim()),
        )
        .unwrap();
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    write_auth("pookie:wrong");
    refused(&["user \"pookie\" from"]);

    write_auth("pookie:s3cret");
    let out = pull(&r);
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = read_meta(&r, "wh", "amd64");
    assert_eq!(meta["ownership"], "subuid");
    check_whiteouts(&rootfs(&r, "wh", "amd64"));
    let out = r.sh_ok("wh", "cat /data/keep/b");
    assert_eq!(out, "added\n");

    // A user without a subuid range: every file theirs, the same tree.
    if require(
        common::user_exists(common::SINGLE_USER),
        "test user pookie-single (scripts/setup-host)",
    ) {
        let single = Runner::new(Who::SingleUser);
        let out = pull(&single);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(read_meta(&single, "wh", "amd64")["ownership"], "single-uid");
        check_whiteouts(&rootfs(&single, "wh", "amd64"));
    }
}

#[test]
fn manylinux_like_image_records_its_pythons_and_package_manager() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let l = Layout::new(&tmp.path().join("ml"));
    let extra = layer(&[
        ("opt/", ""),
        ("opt/_internal/", ""),
        ("opt/_internal/cpython-3.11.9/", ""),
        ("opt/_internal/cpython-3.11.9/bin/", ""),
        ("opt/_internal/cpython-3.11.9/bin/python", "->/bin/busybox"),
        ("opt/_internal/cpython-3.13.1-nogil/", ""),
        ("opt/_internal/cpython-3.13.1-nogil/bin/", ""),
        (
            "opt/_internal/cpython-3.13.1-nogil/bin/python",
            "->/bin/busybox",
        ),
        ("opt/python/", ""),
        ("opt/python/cp311-cp311", "->/opt/_internal/cpython-3.11.9"),
        (
            "opt/python/cp313-cp313t",
            "->/opt/_internal/cpython-3.13.1-nogil",
        ),
        ("opt/python/cp312-cp312", "->/opt/_internal/missing"),
        ("usr/", ""),
        ("usr/bin/", ""),
        ("usr/bin/dnf", "#!/bin/sh\n"),
    ]);
    let img = l.image(
        "amd64",
        None,
        &[
            (LAYER_GZIP, gzip(&busybox_tar("amd64").unwrap())),
            (LAYER_TAR, extra),
        ],
        &[],
        "0:0",
    );
    l.finish(&[("latest", img)]);
    let r = Runner::new(Who::Root);
    r.ok(&["load-baseos", &format!("oci:{}", l.dir.display())]);
    let meta = read_meta(&r, "ml", "amd64");
    let pythons: Vec<(String, bool)> = meta["pythons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["version"].as_str().unwrap().to_string(),
                p["free_threaded"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pythons,
        [("3.11".to_string(), false), ("3.13".to_string(), true)]
    );
    assert_eq!(
        meta["pythons"][0]["path"],
        "/opt/python/cp311-cp311/bin/python"
    );
    assert_eq!(meta["package_manager"], "dnf");
    assert!(r.ok(&["list"]).contains("3.11,3.13t"));
}

#[test]
fn run_honours_the_image_user() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let l = Layout::new(&tmp.path().join("www"));
    // The busybox fixture's /etc/passwd has www-data (33, home /home/www).
    let img = l.image(
        "amd64",
        None,
        &[(LAYER_GZIP, gzip(&busybox_tar("amd64").unwrap()))],
        &["PATH=/bin"],
        "www-data",
    );
    l.finish(&[("v1", img)]);
    let src = format!("oci:{}:v1", l.dir.display());
    let script = "id -u; id -g; echo $HOME; touch /root/x 2>/dev/null || echo denied";
    for who in common::everyone() {
        let r = Runner::new(who);
        r.ok(&["load-baseos", &src, "--name", "www"]);
        let out = r.sh("www", script);
        assert!(out.status.success(), "{who:?}: {}", stderr(&out));
        if who == Who::SingleUser {
            // One id mapped: the command runs as root, and says why.
            assert_eq!(common::stdout(&out), "0\n0\n/root\n", "{who:?}");
            assert!(
                stderr(&out).contains("not mapped in single-uid mode"),
                "{}",
                stderr(&out)
            );
        } else {
            assert_eq!(
                common::stdout(&out),
                "33\n33\n/home/www\ndenied\n",
                "{who:?}"
            );
        }
    }
}

/// The manylinux-like image: the cached Debian bookworm rootfs (its zstd tarball as the first
/// layer, as is) with `/opt/python/cp311-cp311` -> `/opt/_internal/cpython-3.11` whose
/// `bin/python` is Debian's python3.11, and pypa's `AUDITWHEEL_POLICY` in its Env.
fn manylinux_like_layout(dir: &Path, debian: &Path) -> Layout {
    let l = Layout::new(dir);
    let opt = layer(&[
        ("opt/", ""),
        ("opt/_internal/", ""),
        ("opt/_internal/cpython-3.11/", ""),
        ("opt/_internal/cpython-3.11/bin/", ""),
        (
            "opt/_internal/cpython-3.11/bin/python",
            "->/usr/bin/python3.11",
        ),
        ("opt/python/", ""),
        ("opt/python/cp311-cp311", "->/opt/_internal/cpython-3.11"),
    ]);
    let img = l.image(
        "amd64",
        None,
        &[
            (LAYER_ZSTD, std::fs::read(debian).unwrap()),
            (LAYER_TAR, opt),
        ],
        &[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "AUDITWHEEL_POLICY=manylinux_2_36",
            "AUDITWHEEL_PLAT=manylinux_2_36_x86_64",
            "IMAGE_MARK=manylinux-like",
        ],
        "root",
    );
    l.finish(&[("v1", img)]);
    l
}

/// A build of examples/c-ext for x86_64, as pookie-sub, in an image pushed to a fresh loopback
/// registry: what it reported, and what it leaves to look at.
struct ImageBuild {
    r: Runner,
    code: i32,
    report: Value,
    err: String,
    out_dir: PathBuf,
    started: Instant,
    _reg: Registry,
    _tmp: tempfile::TempDir,
}

impl ImageBuild {
    /// `make` writes the image's layout into the directory it is given; it is pushed as `repo`
    /// (tag v1). `options` go at the end of a copy of the example's pyproject.toml (its
    /// [tool.pookie-ns] table is the last), `{registry}` replaced by the registry's address.
    fn run(make: &dyn Fn(&Path) -> Layout, repo: &str, options: &str) -> ImageBuild {
        let started = Instant::now();
        let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
        let layout = make(&tmp.path().join("image"));
        let reg = Registry::start(None);
        reg.push(&layout.dir, "v1", &format!("{repo}:v1"), None);
        eprintln!(
            "image made and pushed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let r = Runner::new(Who::SubUser);
        let project = common::example_copy(&r, "c-ext", "c-ext");
        let pyproject = project.join("pyproject.toml");
        let mut text = std::fs::read_to_string(&pyproject).unwrap();
        text.push_str(&options.replace("{registry}", &reg.host()));
        std::fs::write(&pyproject, text).unwrap();
        let out_dir = r.store.parent().unwrap().join("dist");
        let (code, report, err) = common::build_in(
            &r,
            &project,
            &["x86_64"],
            &["--insecure-registry", &reg.host()],
            &out_dir,
        );
        ImageBuild {
            r,
            code,
            report,
            err,
            out_dir,
            started,
            _reg: reg,
            _tmp: tmp,
        }
    }

    /// The one target built: passed, CPython 3.11 natively in the image `name` (the report
    /// naming its digest), its wheel starting with `wheel_start` delivered alone, its build log
    /// holding each of `build_log`, its tests passed, and the instance refresh run with the
    /// image's apt (its package index only).
    fn check(&self, name: &str, wheel_start: &str, build_log: &[&str]) {
        if self.code != 0 {
            let logs: Vec<String> = self.report["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|t| [t["build_log"].as_str(), t["test_log"].as_str()])
                .flatten()
                .map(|p| format!("{p}:\n{}", std::fs::read_to_string(p).unwrap_or_default()))
                .collect();
            panic!(
                "build failed ({}): {}\n{:#}\n{}",
                self.code,
                self.err,
                self.report,
                logs.join("\n")
            );
        }
        let meta = read_meta(&self.r, name, "amd64");
        let digest = meta["image"]["manifest_digest"].as_str().unwrap();
        let targets = self.report["targets"].as_array().unwrap();
        assert_eq!(targets.len(), 1, "{:#}", self.report);
        let t = &targets[0];
        assert_eq!(t["result"], "passed", "{t:#}");
        assert_eq!(t["python"], "3.11");
        assert_eq!(t["mode"], "native");
        assert_eq!(t["build_base"], format!("{name}/amd64"));
        assert!(
            t["image"]
                .as_str()
                .unwrap()
                .ends_with(&format!("@{digest}")),
            "the report names the image digest: {t:#}"
        );
        let wheel = t["wheel"].as_str().unwrap();
        assert!(
            wheel.starts_with(wheel_start) && !wheel.contains("linux_x86_64.whl"),
            "{wheel}"
        );
        assert_eq!(common::wheels(&self.out_dir), [wheel.to_string()]);
        let log = std::fs::read_to_string(t["build_log"].as_str().unwrap()).unwrap();
        for want in build_log {
            assert!(log.contains(want), "{want}: {log}");
        }
        let test_log = std::fs::read_to_string(t["test_log"].as_str().unwrap()).unwrap();
        assert!(test_log.contains(" passed"), "{test_log}");
        let refresh = self
            .r
            .store
            .join(format!("instances/stable/{name}/amd64/refresh.log"));
        let refresh = std::fs::read_to_string(&refresh).unwrap();
        assert!(
            refresh.contains("refreshing the package index with apt"),
            "{refresh}"
        );
        assert!(!refresh.contains("dist-upgrade"), "{refresh}");
    }
}

impl Drop for ImageBuild {
    fn drop(&mut self) {
        eprintln!(
            "image built in {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The cached Debian bookworm amd64 tarball, and pookie-sub: what the image builds need.
fn image_build_prerequisites() -> Option<PathBuf> {
    let debian = Path::new(common::FOREIGN_CACHE).join("debian-bookworm-amd64.tar.zst");
    (prerequisites()
        && require(
            debian.exists(),
            "the cached Debian tarball (scripts/build-test-rootfs)",
        )
        && require(
            common::user_exists(common::SUB_USER),
            "test user pookie-sub (scripts/setup-host)",
        ))
    .then_some(debian)
}

#[test]
fn build_in_a_manylinux_like_image_from_a_registry() {
    let Some(debian) = image_build_prerequisites() else {
        return;
    };
    // The key as a registry reference without transport; before-build shows the image's Env.
    let b = ImageBuild::run(
        &|dir| manylinux_like_layout(dir, &debian),
        "pypa/manylinux_2_36_x86_64",
        "manylinux-x86_64-image = \"{registry}/pypa/manylinux_2_36_x86_64:v1\"\n\
         before-build = \"echo image-mark=$IMAGE_MARK; command -v python\"\n",
    );
    // Pulled on first use, named after its repository.
    assert!(
        b.err.contains("loading the image docker://127.0.0.1:")
            && b.err.contains("manylinux-x86_64-image"),
        "{}",
        b.err
    );
    // Repaired to the image's policy, tested (the example's pytest suite) on the image.
    b.check(
        "manylinux_2_36_x86_64-v1",
        "fastmath-0.1.0-cp311-cp311-manylinux",
        &[
            "image-mark=manylinux-like",
            "/opt/python/cp311-cp311/bin/python -m pip wheel",
            "+ no auditwheel in the image",
            "auditwheel repair --plat manylinux_2_36_x86_64",
        ],
    );
    // The CPython matrix is the image's: 3.11 built, the others requires-python admits skipped.
    let skipped = b.report["skipped"].to_string();
    assert!(
        skipped.contains("cp313-manylinux_x86_64") && skipped.contains("carries CPython 3.11"),
        "{skipped}"
    );
}

/// The musllinux-like image: the cached Debian bookworm rootfs (the compilers) with the musl CPython of
/// scripts/build-musl-python as a second layer (`/opt/python/cp311-cp311`, musl's loader,
/// headers and musl-gcc, which the interpreter's sysconfig names as its compiler), and
/// pypa's musllinux `AUDITWHEEL_POLICY`.
fn musllinux_like_layout(dir: &Path, debian: &Path, musl: &Path) -> Layout {
    let l = Layout::new(dir);
    let img = l.image(
        "amd64",
        None,
        &[
            (LAYER_ZSTD, std::fs::read(debian).unwrap()),
            (LAYER_ZSTD, std::fs::read(musl).unwrap()),
        ],
        &[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "AUDITWHEEL_POLICY=musllinux_1_2",
            "AUDITWHEEL_PLAT=musllinux_1_2_x86_64",
            "IMAGE_MARK=musllinux-like",
        ],
        "root",
    );
    l.finish(&[("v1", img)]);
    l
}

/// A musllinux target: asked for by the project's build selector, built in the project's
/// `musllinux-x86_64-image` with its musl CPython, repaired to musllinux_1_2 and tested there
/// (pytest from PyPI, as a cibuildwheel project asks for it: the image has none).
#[test]
fn build_in_a_musllinux_like_image_from_a_registry() {
    let Some(debian) = image_build_prerequisites() else {
        return;
    };
    let musl = Path::new(common::FOREIGN_CACHE).join("musl-cpython-3.11-x86_64.tar.zst");
    if !require(
        musl.exists(),
        "the cached musl CPython (scripts/build-musl-python)",
    ) {
        return;
    }
    let b = ImageBuild::run(
        &|dir| musllinux_like_layout(dir, &debian, &musl),
        "pypa/musllinux_1_2_x86_64",
        "build = \"*-musllinux_*\"\n\
         test-requires = \"pytest\"\n\
         musllinux-x86_64-image = \"{registry}/pypa/musllinux_1_2_x86_64:v1\"\n\
         before-build = \"echo image-mark=$IMAGE_MARK; python -c 'import sysconfig; \
         print(sysconfig.get_config_var(\\\"CC\\\"))'\"\n",
    );
    assert!(
        b.err.contains("loading the image docker://127.0.0.1:")
            && b.err.contains("musllinux-x86_64-image"),
        "{}",
        b.err
    );
    b.check(
        "musllinux_1_2_x86_64-v1",
        "fastmath-0.1.0-cp311-cp311-musllinux_1_2_x86_64",
        &[
            "image-mark=musllinux-like",
            "musl-gcc",
            "/opt/python/cp311-cp311/bin/python -m pip wheel",
            "auditwheel repair --plat musllinux_1_2_x86_64",
        ],
    );
    let t = &b.report["targets"][0];
    assert_eq!(t["target"], "cp311-musllinux_1_2_x86_64", "{t:#}");
    assert_eq!(t["identifier"], "cp311-musllinux_x86_64", "{t:#}");
    assert_eq!(t["wheel_tag"], "musllinux_1_2_x86_64", "{t:#}");
    // The manylinux target was left out by the selector; the image carries 3.11 only.
    let skipped = b.report["skipped"].to_string();
    assert!(
        skipped.contains("cp311-manylinux_x86_64")
            && skipped.contains("cp313-musllinux_x86_64")
            && skipped.contains("carries CPython 3.11"),
        "{skipped}"
    );
    // The wheel's extension module is linked against musl (Alpine's soname), not glibc.
    let wheel = b.out_dir.join(t["wheel"].as_str().unwrap());
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "d=$(mktemp -d) && cd \"$d\" && python3 -m zipfile -e {} . && \
             readelf -d $(find . -name '*.so') && rm -rf \"$d\"",
            wheel.display()
        ))
        .output()
        .unwrap();
    let dynamic = common::stdout(&listing);
    assert!(
        dynamic.contains("Shared library: [libc.musl-x86_64.so.1]")
            && !dynamic.contains("libc.so.6"),
        "{dynamic}"
    );
}

/// A pypa-like image on Debian forky: the cached forky rootfs (its zstd tarball as the first
/// layer) with `/opt/python/cp313-cp313` -> forky's python3.13, and pypa's Env.
fn forky_image_layout(dir: &Path, forky: &Path) -> Layout {
    let l = Layout::new(dir);
    let opt = layer(&[
        ("opt/", ""),
        ("opt/_internal/", ""),
        ("opt/_internal/cpython-3.13/", ""),
        ("opt/_internal/cpython-3.13/bin/", ""),
        (
            "opt/_internal/cpython-3.13/bin/python",
            "->/usr/bin/python3.13",
        ),
        ("opt/python/", ""),
        ("opt/python/cp313-cp313", "->/opt/_internal/cpython-3.13"),
    ]);
    let img = l.image(
        "amd64",
        None,
        &[
            (LAYER_ZSTD, std::fs::read(forky).unwrap()),
            (LAYER_TAR, opt),
        ],
        &[
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "AUDITWHEEL_POLICY=manylinux_2_28",
            "AUDITWHEEL_PLAT=manylinux_2_28_x86_64",
        ],
        "root",
    );
    l.finish(&[("latest", img)]);
    l
}

/// Issue 29: each identifier has a source. This host's recipes give CPython 3.13 for arm64
/// only (trixie's and forky's shadowed in the config dir), so for x86_64 with requires-python
/// 3.11 to 3.13: cp311 comes from Debian bookworm (the cached tarball, preferred), cp312 and
/// cp313 — no Debian base OS has them — from cibuildwheel's default image,
/// manylinux_2_28_x86_64, pulled from a loopback mirror of pypa's images (config.toml's
/// `image_mirror`). The image carries 3.13 only: cp312 is skipped saying so, cp313 is built
/// and tested there, its digest in the plan line and the report. Then, `--offline` with a
/// mirror whose image the store lacks: cp312 and cp313 fail with the reason and the fix,
/// cp311 is still delivered, exit 1.
#[test]
fn identifiers_debian_lacks_build_in_cibuildwheels_default_image() {
    let Some(_) = image_build_prerequisites() else {
        return;
    };
    let forky = Path::new(common::FOREIGN_CACHE).join("debian-forky-amd64.tar.zst");
    if !require(
        forky.exists(),
        "the cached forky tarball (scripts/build-test-rootfs)",
    ) {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let layout = forky_image_layout(&tmp.path().join("image"), &forky);
    let reg = Registry::start(None);
    reg.push(
        &layout.dir,
        "latest",
        "pypa/manylinux_2_28_x86_64:latest",
        None,
    );
    let Some(r) = common::runner_with_debian(Who::Root, &["debian-bookworm-amd64"]) else {
        return;
    };
    let recipes = r.config.join("rootfs");
    std::fs::create_dir_all(&recipes).unwrap();
    for name in ["debian-trixie", "debian-forky"] {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("rootfs/{name}.toml")),
        )
        .unwrap();
        let arches = text
            .lines()
            .find(|l| l.starts_with("arches"))
            .unwrap()
            .to_string();
        std::fs::write(
            recipes.join(format!("{name}.toml")),
            text.replace(&arches, "arches = [\"arm64\"]"),
        )
        .unwrap();
    }
    r.write_config(&format!("image_mirror = \"{}/pypa\"\n", reg.host()));
    let project = common::example_copy(&r, "c-ext", "c-ext");
    let pp = project.join("pyproject.toml");
    let text = std::fs::read_to_string(&pp).unwrap().replace(
        "requires-python = \">=3.9\"",
        "requires-python = \">=3.11,<3.14\"",
    );
    std::fs::write(&pp, text).unwrap();
    let out_dir = r.store.parent().unwrap().join("dist");
    let extra = [
        "--insecure-registry",
        &reg.host(),
        "--compiler",
        "gcc",
        "--before-all",
        "true",
        "--test",
        "python -c 'import fastmath, platform, sys; assert fastmath.gcd(12, 18) == 6; print(platform.machine(), sys.version)'",
    ];
    let (code, report, err) = common::build_in(&r, &project, &["x86_64"], &extra, &out_dir);
    assert_eq!(code, 0, "{err}\n{report:#}");
    let image_ref = format!("docker://{}/pypa/manylinux_2_28_x86_64", reg.host());
    let targets = report["targets"].as_array().unwrap();
    let ids: Vec<&str> = targets
        .iter()
        .map(|t| t["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["cp311-manylinux_x86_64", "cp313-manylinux_x86_64"],
        "{report:#}"
    );
    assert!(
        targets.iter().all(|t| t["result"] == "passed"),
        "{report:#}"
    );
    assert_eq!(targets[0]["build_base"], "debian-bookworm/amd64");
    assert!(targets[0]["image"].is_null(), "{report:#}");
    let digest = targets[1]["image"].as_str().unwrap();
    assert!(
        digest.starts_with(&format!("{image_ref}@sha256:")),
        "the report names the image by digest: {report:#}"
    );
    assert_eq!(targets[1]["mode"], "native");
    // The plan names each identifier's source.
    assert!(
        err.contains("plan: cp311-manylinux_x86_64 \u{2190} base OS debian-bookworm"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "plan: cp313-manylinux_x86_64 \u{2190} image {digest} (manylinux-x86_64-image \
             (cibuildwheel's default, manylinux_2_28)), native"
        )),
        "{err}"
    );
    let skipped = report["skipped"].to_string();
    assert!(
        skipped.contains("cp312-manylinux_x86_64")
            && skipped.contains("carries CPython 3.13, not 3.12"),
        "{skipped}"
    );
    let wheels = common::wheels(&out_dir);
    assert_eq!(wheels.len(), 2, "{wheels:?}");
    assert!(
        wheels
            .iter()
            .any(|w| w.starts_with("fastmath-0.1.0-cp313-cp313-manylinux")),
        "{wheels:?}"
    );
    let test_log = std::fs::read_to_string(targets[1]["test_log"].as_str().unwrap()).unwrap();
    assert!(test_log.contains("x86_64 3.13."), "{test_log}");

    // Offline, with a mirror whose image the store lacks: those identifiers fail, saying why
    // and what to do; cp311 is delivered all the same.
    r.write_config("image_mirror = \"127.0.0.1:9/pypa\"\n");
    let out_dir = r.store.parent().unwrap().join("dist-offline");
    let mut extra = extra.to_vec();
    extra.push("--offline");
    let (code, report, err) = common::build_in(&r, &project, &["x86_64"], &extra, &out_dir);
    assert_eq!(code, 1, "{err}\n{report:#}");
    let targets = report["targets"].as_array().unwrap();
    let by_id = |id: &str| {
        targets
            .iter()
            .find(|t| t["identifier"] == id)
            .unwrap_or_else(|| panic!("no {id}: {report:#}"))
    };
    assert_eq!(
        by_id("cp311-manylinux_x86_64")["result"],
        "passed",
        "{report:#}"
    );
    for id in ["cp312-manylinux_x86_64", "cp313-manylinux_x86_64"] {
        let t = by_id(id);
        assert_ne!(t["result"], "passed", "{t:#}");
        let why = t["error"].as_str().unwrap_or_default();
        assert!(
            why.contains("127.0.0.1:9/pypa/manylinux_2_28_x86_64")
                && why.contains("--offline forbids pulling it")
                && why.contains("skip = \"cp312-manylinux_x86_64 cp313-manylinux_x86_64\""),
            "{why}"
        );
    }
    let wheels = common::wheels(&out_dir);
    assert_eq!(wheels.len(), 1, "{wheels:?}");
    assert!(
        wheels[0].starts_with("fastmath-0.1.0-cp311-cp311-manylinux"),
        "{wheels:?}"
    );
    eprintln!(
        "default-image builds done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// One hostile variant of a valid single-layer layout: what to break, and what the error says.
fn hostile_case(dir: &Path, case: &str) -> (PathBuf, &'static str) {
    let l = Layout::new(dir);
    let busybox = gzip(&busybox_tar("amd64").unwrap());
    let mut layers = vec![(LAYER_GZIP, busybox)];
    match case {
        "dotdot" => layers.push((LAYER_TAR, {
            // Written by hand: the tar crate refuses `..` when building.
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(4);
            h.as_old_mut().name[..11].copy_from_slice(b"../escaped\0");
            h.set_cksum();
            let mut b = tar::Builder::new(Vec::new());
            b.append(&h, &b"evil"[..]).unwrap();
            b.into_inner().unwrap()
        })),
        "symlink-escape" => layers.push((
            LAYER_TAR,
            layer(&[("escape", "->/tmp"), ("escape/pwned", "evil")]),
        )),
        "wrong-digest" => layers.push((LAYER_TAR, layer(&[("payload", &"A".repeat(1000))]))),
        _ => {}
    }
    let media = if case == "media-type" {
        "application/vnd.example.unknown"
    } else {
        LAYER_GZIP
    };
    let img = l.image("amd64", None, &layers, &[], "0:0");
    l.finish(&[("v1", img.clone())]);
    let manifest_path = l.path_of(&img);
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let layer0 = l.path_of(&manifest["layers"][0]);
    let expect = match case {
        "wrong-digest" => {
            // Same size, one byte of a file's data changed (a plain tar has no checksum there).
            let path = l.path_of(&manifest["layers"][1]);
            let mut b = std::fs::read(&path).unwrap();
            let at = b.windows(8).position(|w| w == b"AAAAAAAA").unwrap();
            b[at] = b'B';
            std::fs::write(&path, b).unwrap();
            "does not match its digest"
        }
        "truncated" => {
            let b = std::fs::read(&layer0).unwrap();
            std::fs::write(&layer0, &b[..b.len() / 2]).unwrap();
            "truncated"
        }
        "dotdot" => "escapes the root filesystem",
        "symlink-escape" => "through the symlink",
        "media-type" => {
            let mut m = manifest.clone();
            m["layers"][0]["mediaType"] = json!(media);
            let bytes = m.to_string();
            let mut d = l.blob(OCI_MANIFEST, bytes.as_bytes());
            d["platform"] = img["platform"].clone();
            l.finish(&[("v1", d)]);
            "unsupported media type"
        }
        "huge-manifest" => {
            let mut m = manifest.clone();
            m["annotations"] = json!({"padding": "x".repeat(5 << 20)});
            let mut d = l.blob(OCI_MANIFEST, m.to_string().as_bytes());
            d["platform"] = img["platform"].clone();
            l.finish(&[("v1", d)]);
            "larger than"
        }
        "manifest-digest" => {
            // The manifest file edited after the index was written.
            let mut m = manifest.clone();
            m["annotations"] = json!({"edited": "yes"});
            std::fs::write(&manifest_path, m.to_string()).unwrap();
            "bytes where its descriptor says"
        }
        other => panic!("{other}"),
    };
    (l.dir.clone(), expect)
}

#[test]
fn hostile_images_exit_2_and_leave_nothing() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = Runner::new(Who::Root);
    for case in [
        "wrong-digest",
        "truncated",
        "dotdot",
        "symlink-escape",
        "media-type",
        "huge-manifest",
        "manifest-digest",
    ] {
        let (dir, expect) = hostile_case(&tmp.path().join(case), case);
        let out = r.run(&[
            "load-baseos",
            &format!("oci:{}:v1", dir.display()),
            "--name",
            case,
        ]);
        assert_eq!(out.status.code(), Some(2), "{case}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{case}: {}", stderr(&out));
        store_is_empty(&r);
    }
    assert!(!Path::new("/tmp/pwned").exists() && !Path::new("/escaped").exists());
    // A registry that does not exist.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let out = r.run(&registry_pull(
        &format!("docker://{host}/nothing:v1"),
        &[],
        &host,
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the registry"),
        "{}",
        stderr(&out)
    );
    store_is_empty(&r);
    // A tag that is not there.
    let reg = Registry::start(None);
    let out = r.run(&registry_pull(
        &reg.reference("nothing/here:v1"),
        &[],
        &reg.host(),
    ));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found (404)"), "{}", stderr(&out));
    store_is_empty(&r);
}

#[test]
fn a_pull_killed_mid_download_leaves_a_consistent_store() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_registry, reference, host) = whiteout_pushed(tmp.path(), None, "crash/wh:v1");
    let r = Runner::new(Who::Root);
    let args = registry_pull(&reference, &["--name", "wh"], &host);
    let out = r
        .command(&args)
        .env("POOKIE_NS_FAULT", "oci-downloading")
        .process_group(0)
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", stderr(&out));
    let blobs = r.store.join("blobs/sha256");
    let partial = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".partial."))
            .count()
    };
    assert_eq!(partial(&blobs), 1, "the killed download's partial file");
    assert!(!r.store.join("baseos/wh").exists(), "no half-made base OS");
    // Killed again once the first layer is whole: the partial file of the first kill is gone
    // (that blob downloaded again from its start), the blob is verified and in place.
    let out = r
        .command(&args)
        .env("POOKIE_NS_FAULT", "oci-blob-landed")
        .process_group(0)
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", stderr(&out));
    assert_eq!(partial(&blobs), 0, "the first kill's partial file removed");
    let landed: Vec<PathBuf> = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(landed.len(), 1, "{landed:?}");
    let name = landed[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        sha256(&std::fs::read(&landed[0]).unwrap()),
        name,
        "a whole blob"
    );
    assert!(!r.store.join("baseos/wh").exists(), "no half-made base OS");
    // The next pull completes: the verified blob is not downloaded again, the other two are.
    let out = r.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 layers") && stderr(&out).contains("1 from the cache"),
        "{}",
        stderr(&out)
    );
    assert_eq!(partial(&blobs), 0);
    check_whiteouts(&rootfs(&r, "wh", "amd64"));
    r.ok(&["list"]);
    assert_eq!(std::fs::read_dir(r.store.join("tmp")).unwrap().count(), 0);
}

/// What the stand-in registry answers: status, extra headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A registry stand-in on 127.0.0.1 for what a real registry never does (bearer tokens, rate
/// limits, blobs that do not match their digest). `answer` gets the request path and its
/// Authorization header. One thread, one connection at a time, `Connection: close`.
fn fake_registry(answer: impl Fn(&str, Option<&str>) -> Answer + Send + 'static) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        auth = Some(v.trim().to_string());
                    }
                }
            }
            let (status, headers, body) = answer(&path, auth.as_deref());
            // `X-Cut`: twice the length announced, the body sent, the connection closed.
            let cut = headers.iter().any(|(k, _)| k == "X-Cut");
            let length = if cut { body.len() * 2 } else { body.len() };
            let mut head =
                format!("HTTP/1.1 {status} X\r\nContent-Length: {length}\r\nConnection: close\r\n");
            for (k, v) in headers.into_iter().filter(|(k, _)| k != "X-Cut") {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    port
}

/// A one-layer busybox image as the stand-in serves it: (manifest, config, layer) bytes.
fn fake_image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let layer = gzip(&busybox_tar("amd64").unwrap());
    let config = json!({"architecture": "amd64", "os": "linux", "config": {"Env": ["FAKE=1"]},
        "rootfs": {"type": "layers", "diff_ids": []}})
    .to_string()
    .into_bytes();
    let desc = |t: &str, b: &[u8]| json!({"mediaType": t, "digest": format!("sha256:{}", sha256(b)), "size": b.len()});
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, &config), "layers": [desc(LAYER_GZIP, &layer)]})
    .to_string()
    .into_bytes();
    (manifest, config, layer)
}

#[test]
fn bearer_tokens_rate_limits_and_bad_blobs_from_a_registry() {
    if !prerequisites() {
        return;
    }
    let (manifest, config, layer) = fake_image();
    let (m_hex, c_hex, l_hex) = (sha256(&manifest), sha256(&config), sha256(&layer));
    let json_type = |t: &str| vec![("Content-Type".to_string(), t.to_string())];
    // /v2/<mode>/...: `ok` (behind a bearer token), `limited`, `corrupt`, `short`, `cut`, `huge`.
    let port_cell = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
    let port_for = port_cell.clone();
    let port = fake_registry(move |path, auth| {
        let port = port_for.get().copied().unwrap_or(0);
        if path.starts_with("/token?") {
            assert!(path.contains("scope=repository%3Aok%3Apull"), "{path}");
            return (200, vec![], br#"{"token":"T0KEN"}"#.to_vec());
        }
        let mode = path
            .trim_start_matches("/v2/")
            .split('/')
            .next()
            .unwrap_or("");
        if mode == "ok" && auth != Some("Bearer T0KEN") {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:ok:pull""#
            );
            return (401, vec![("WWW-Authenticate".into(), challenge)], vec![]);
        }
        if mode == "limited" {
            return (429, vec![("Retry-After".into(), "30".into())], vec![]);
        }
        if path.ends_with("/manifests/v1") {
            if mode == "huge" {
                return (200, json_type(OCI_MANIFEST), vec![b' '; 5 << 20]);
            }
            return (200, json_type(OCI_MANIFEST), manifest.clone());
        }
        if path.ends_with(&c_hex) {
            return (200, vec![], config.clone());
        }
        if path.ends_with(&l_hex) {
            return match mode {
                "corrupt" => {
                    let mut b = layer.clone();
                    let n = b.len();
                    b[n / 2] ^= 0xff;
                    (200, vec![], b)
                }
                "short" => (200, vec![], layer[..layer.len() / 2].to_vec()),
                "cut" => (
                    200,
                    vec![("X-Cut".into(), "1".into())],
                    layer[..layer.len() / 2].to_vec(),
                ),
                _ => (200, vec![], layer.clone()),
            };
        }
        (404, vec![], vec![])
    });
    port_cell.set(port).unwrap();
    let host = format!("127.0.0.1:{port}");
    let r = Runner::new(Who::Root);
    let load = |mode: &str| {
        r.run(&registry_pull(
            &format!("docker://{host}/{mode}:v1"),
            &["--name", mode],
            &host,
        ))
    };
    let blobs = r.store.join("blobs/sha256");
    let blob_files = || std::fs::read_dir(&blobs).map(|rd| rd.count()).unwrap_or(0);
    for (mode, expect) in [
        ("limited", "retry after 30 s"),
        ("huge", "larger than"),
        ("corrupt", "does not match its digest"),
        ("short", "bytes where its descriptor says"),
        ("cut", "the connection ended early"),
    ] {
        let out = load(mode);
        assert_eq!(out.status.code(), Some(2), "{mode}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{mode}: {}", stderr(&out));
        store_is_empty(&r);
        assert_eq!(blob_files(), 0, "{mode}: nothing in the blob cache");
    }
    let out = load("ok");
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = read_meta(&r, "ok", "amd64");
    assert_eq!(meta["image"]["manifest_digest"], format!("sha256:{m_hex}"));
    assert_eq!(meta["image"]["env"][0], "FAKE=1");
    assert_eq!(blob_files(), 1);
}
