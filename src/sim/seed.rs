//! Seeding the simulator's instances from `--instance ID=STATE` flags and from a file.

use super::fleet::parse_state;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A seed that cannot be read, naming the flag or the file and entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("--instance {value:?}: {reason}")]
    Flag { value: String, reason: String },
    #[error("seed file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("seed {source_name}: {reason}")]
    Text { source_name: String, reason: String },
}

/// Parses `ID=STATE`, where STATE is a status code or a name such as `DataLoaded`.
pub fn parse_instance_flag(value: &str) -> Result<(String, i64), SeedError> {
    let err = |reason: String| SeedError::Flag {
        value: value.chars().take(64).collect(),
        reason,
    };
    let (id, state) = value
        .split_once('=')
        .ok_or_else(|| err("expected ID=STATE, for example a44uhlf7=DataLoaded".into()))?;
    if id.trim().is_empty() {
        return Err(err("the instance id is empty".into()));
    }
    Ok((id.trim().to_owned(), parse_state(state).map_err(err)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    instances: Vec<SeedEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedEntry {
    instance_id: String,
    status: yaml_serde::Value,
}

/// Reads a YAML (or JSON) file of the form
/// `instances: [{instance_id: a44uhlf7, status: DataLoaded}, ...]`.
pub fn read_seed_file(path: &Path) -> Result<Vec<(String, i64)>, SeedError> {
    let err = |reason: String| SeedError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_seed(&text).map_err(err)
}

/// Parses seed text (the format of [`read_seed_file`]); `source_name` names it in errors.
pub fn parse_seed_text(source_name: &str, text: &str) -> Result<Vec<(String, i64)>, SeedError> {
    parse_seed(text).map_err(|reason| SeedError::Text {
        source_name: source_name.to_owned(),
        reason,
    })
}

fn parse_seed(text: &str) -> Result<Vec<(String, i64)>, String> {
    let file: SeedFile = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    file.instances
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let state = match &entry.status {
                yaml_serde::Value::String(s) => s.clone(),
                yaml_serde::Value::Number(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            let code = parse_state(&state).map_err(|e| format!("instances[{i}].status: {e}"))?;
            if entry.instance_id.is_empty() {
                return Err(format!("instances[{i}].instance_id is empty"));
            }
            Ok((entry.instance_id, code))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_flags_parse_and_refuse_with_the_flag_named() {
        assert_eq!(
            parse_instance_flag("a1=DataLoaded").unwrap(),
            ("a1".into(), 2)
        );
        assert_eq!(parse_instance_flag("a1=4").unwrap(), ("a1".into(), 4));
        let e = parse_instance_flag("a1").unwrap_err().to_string();
        assert!(e.contains("--instance") && e.contains("ID=STATE"), "{e}");
        let e = parse_instance_flag("a1=Napping").unwrap_err().to_string();
        assert!(e.contains("Napping"), "{e}");
    }

    #[test]
    fn seed_files_name_the_bad_entry() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        std::fs::write(
            &good,
            "instances:\n- {instance_id: a1, status: Idle}\n- {instance_id: a2, status: 7}\n",
        )
        .unwrap();
        assert_eq!(
            read_seed_file(&good).unwrap(),
            vec![("a1".into(), 0), ("a2".into(), 7)]
        );
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "instances:\n- {instance_id: a1, status: Idle}\n- {instance_id: a2, status: Zzz}\n",
        )
        .unwrap();
        let e = read_seed_file(&bad).unwrap_err().to_string();
        assert!(
            e.contains("instances[1].status") && e.contains("bad.yaml"),
            "{e}"
        );
    }
}
