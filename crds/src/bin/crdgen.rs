//! Writes the modelplane CRDs to `crds/yaml/` and to the Helm chart's `crds/` folder.
//!
//! Run from anywhere in the workspace: `cargo run -p modelplane-api --bin crdgen`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use modelplane_api::crd;

/// Folders, relative to the workspace root, that receive every CRD file.
const TARGET_DIRS: [&str; 2] = ["crds/yaml", "charts/modelplane/crds"];

fn main() -> ExitCode {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match write_all(&workspace) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("crdgen: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(workspace: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for file in crd::all().map_err(|e| e.to_string())? {
        let yaml =
            crd::to_yaml(&file.crd).map_err(|e| format!("rendering {}: {e}", file.file_name))?;
        for dir in TARGET_DIRS {
            let dir = workspace.join(dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let path = dir.join(file.file_name);
            std::fs::write(&path, &yaml).map_err(|e| format!("writing {}: {e}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}
