//! Prints every CRD as YAML, or with `--write <repo root>` writes them into the charts.

use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("crdgen: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let crds = pgpool_api::crds::all();
    match args.as_slice() {
        [] => {
            for crd in &crds {
                print!("---\n{}", pgpool_api::crds::to_yaml(crd)?);
            }
            Ok(())
        }
        [flag, root] if flag == "--write" => {
            let root = PathBuf::from(root);
            for crd in &crds {
                let path = root.join(pgpool_api::crds::file_of(crd));
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&path, pgpool_api::crds::to_yaml(crd)?)?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        _ => Err("usage: crdgen [--write <repository root>]".into()),
    }
}
