//! A policy bundle, in OPA's bundle layout: `.rego` modules, `data.json`
//! documents, a `.manifest` (`revision`, `roots`) and the golden decisions
//! (`golden/decisions.jsonl`). A bundle is read whole (from a directory, or
//! the copy of the repository's `policies/` embedded in the binary) and
//! identified by a hash over a canonical form, so the same bundle hashes the
//! same on every machine.

use super::PolicyError;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Most files a bundle may hold.
pub const MAX_BUNDLE_FILES: usize = 256;
/// Most bytes a bundle's files may hold together.
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;
/// Where a bundle keeps the decisions it must give.
pub const GOLDEN_PATH: &str = "golden/decisions.jsonl";
pub const MANIFEST_PATH: &str = ".manifest";

/// The repository's `policies/` bundle, built into the binary: the policy a
/// node runs when its config names no `policies_dir`. A test checks it is
/// exactly what `policies/` holds, so a file added there must be added here.
const EMBEDDED: &[(&str, &str)] = &[
    (MANIFEST_PATH, include_str!("../../../policies/.manifest")),
    ("warden/authz.rego", include_str!("../../../policies/warden/authz.rego")),
    ("warden/authz_test.rego", include_str!("../../../policies/warden/authz_test.rego")),
    (GOLDEN_PATH, include_str!("../../../policies/golden/decisions.jsonl")),
];

/// Where a bundle was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleSource {
    Embedded,
    Dir(PathBuf),
    /// Pushed to a node (`PUT /v1/policies`).
    Pushed,
    /// Read from the replicated state (an activation).
    Replicated,
}

impl std::fmt::Display for BundleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Pushed => f.write_str("pushed"),
            Self::Replicated => f.write_str("replicated"),
        }
    }
}

/// A bundle's files by path (`/`-separated, relative to the bundle's root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    files: BTreeMap<String, String>,
    source: BundleSource,
    hash: String,
    revision: String,
    roots: Vec<String>,
}

/// What a bundle's `.manifest` may say.
#[derive(serde::Deserialize)]
struct Manifest {
    #[serde(default)]
    revision: String,
    #[serde(default)]
    roots: Vec<String>,
}

/// Whether `path` is a file a bundle carries.
fn is_bundle_file(path: &str) -> bool {
    path == MANIFEST_PATH
        || path.ends_with(".rego")
        || path == "data.json"
        || path.ends_with("/data.json")
        || path == GOLDEN_PATH
}

impl Bundle {
    /// The bundle built into the binary.
    pub fn embedded() -> Bundle {
        let files = EMBEDDED.iter().map(|(p, c)| ((*p).to_owned(), (*c).to_owned())).collect();
        Bundle::from_files(files, BundleSource::Embedded).expect("the embedded bundle is checked by its tests")
    }

    /// Reads every bundle file under `dir` (other files are ignored).
    pub fn load_dir(dir: &Path) -> Result<Bundle, PolicyError> {
        let mut files = BTreeMap::new();
        let mut total = 0;
        read_tree(dir, dir, &mut files, &mut total)?;
        if files.is_empty() {
            return Err(PolicyError::Bundle(format!("{} holds no policy files", dir.display())));
        }
        Bundle::from_files(files, BundleSource::Dir(dir.to_owned()))
    }

    /// A bundle of these files; checks the manifest and the data documents.
    pub fn from_files(files: BTreeMap<String, String>, source: BundleSource) -> Result<Bundle, PolicyError> {
        if files.len() > MAX_BUNDLE_FILES {
            return Err(PolicyError::Bundle(format!("{} files; the limit is {MAX_BUNDLE_FILES}", files.len())));
        }
        let bytes: usize = files.values().map(String::len).sum();
        if bytes > MAX_BUNDLE_BYTES {
            return Err(PolicyError::Bundle(format!("{bytes} bytes; the limit is {MAX_BUNDLE_BYTES}")));
        }
        let manifest = match files.get(MANIFEST_PATH) {
            Some(text) => serde_json::from_str::<Manifest>(text)
                .map_err(|e| PolicyError::Bundle(format!("{MANIFEST_PATH}: {e}")))?,
            None => Manifest { revision: String::new(), roots: Vec::new() },
        };
        let mut hasher = Sha256::new();
        for (path, content) in &files {
            let canonical = if path.ends_with(".json") || path == MANIFEST_PATH {
                let value: serde_json::Value =
                    serde_json::from_str(content).map_err(|e| PolicyError::Bundle(format!("{path}: {e}")))?;
                // serde_json's maps are sorted by key: this is the canonical text.
                value.to_string()
            } else {
                content.clone()
            };
            hasher.update((path.len() as u64).to_be_bytes());
            hasher.update(path.as_bytes());
            hasher.update((canonical.len() as u64).to_be_bytes());
            hasher.update(canonical.as_bytes());
        }
        let hash = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Bundle { files, source, hash, revision: manifest.revision, roots: manifest.roots })
    }

    /// SHA-256 (hex) over the sorted paths and contents, JSON in canonical form.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The manifest's revision ("" without one).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    pub fn source(&self) -> &BundleSource {
        &self.source
    }

    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// The Rego modules, by path.
    pub fn modules(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().filter(|(p, _)| p.ends_with(".rego")).map(|(p, c)| (p.as_str(), c.as_str()))
    }

    /// The data documents with the path each is rooted at (`a/b/data.json` → `["a", "b"]`).
    pub fn data_documents(&self) -> impl Iterator<Item = (Vec<&str>, &str)> {
        self.files.iter().filter(|(p, _)| p.ends_with("data.json")).map(|(p, c)| {
            let dir: Vec<&str> = p.split('/').collect();
            (dir[..dir.len() - 1].to_vec(), c.as_str())
        })
    }

    /// The golden decisions, if the bundle has them.
    pub fn golden(&self) -> Option<&str> {
        self.files.get(GOLDEN_PATH).map(String::as_str)
    }
}

fn read_tree(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, String>,
    total: &mut usize,
) -> Result<(), PolicyError> {
    let unreadable = |p: &Path, e: std::io::Error| PolicyError::Bundle(format!("cannot read {}: {e}", p.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| unreadable(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| unreadable(&path, e))?;
        if kind.is_dir() {
            read_tree(root, &path, files, total)?;
            continue;
        }
        let rel = path.strip_prefix(root).expect("under the root").components();
        let rel: Vec<String> = rel.map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let rel = rel.join("/");
        if !is_bundle_file(&rel) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
        *total += text.len();
        if files.len() >= MAX_BUNDLE_FILES || *total > MAX_BUNDLE_BYTES {
            return Err(PolicyError::Bundle(format!(
                "{} is over {MAX_BUNDLE_FILES} files or {MAX_BUNDLE_BYTES} bytes",
                root.display()
            )));
        }
        files.insert(rel, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_policies() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
    }

    #[test]
    fn the_embedded_bundle_is_the_repository_policies_dir() {
        let on_disk = Bundle::load_dir(&repo_policies()).unwrap();
        let embedded = Bundle::embedded();
        assert_eq!(embedded.files(), on_disk.files(), "policies/ and the embedded list differ");
        assert_eq!(embedded.hash(), on_disk.hash());
        assert_eq!(embedded.revision(), "warden-4tier-1");
        assert_eq!(embedded.roots(), ["warden"]);
    }

    #[test]
    fn the_hash_covers_paths_and_contents_but_not_json_layout() {
        let files = |manifest: &str, rego: &str| {
            BTreeMap::from([(MANIFEST_PATH.to_owned(), manifest.to_owned()), ("a.rego".to_owned(), rego.to_owned())])
        };
        let hash = |m: &str, r: &str| Bundle::from_files(files(m, r), BundleSource::Embedded).unwrap().hash;
        let base = hash(r#"{"revision": "1", "roots": ["a"]}"#, "package a\n");
        assert_eq!(base, hash("{\"roots\":[\"a\"],\n \"revision\":\"1\"}", "package a\n"));
        assert_ne!(base, hash(r#"{"revision": "2", "roots": ["a"]}"#, "package a\n"));
        assert_ne!(base, hash(r#"{"revision": "1", "roots": ["a"]}"#, "package a \n"));
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn a_bad_manifest_or_an_empty_dir_is_refused() {
        let bad = BTreeMap::from([(MANIFEST_PATH.to_owned(), "{revision".to_owned())]);
        assert!(Bundle::from_files(bad, BundleSource::Embedded).is_err());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
        let err = Bundle::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no policy files"), "{err}");
    }
}
