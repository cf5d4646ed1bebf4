//! A small writer of LitData datasets in the classic uncompressed chunk layout.
//!
//! The demo uses it to make its dataset without Python, and tests use it to make datasets
//! with exactly the defects they need. It writes what `litdata.optimize()` writes for flat
//! dict samples without compression or pyarrow (LitData itself reads the result).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{IoContext, Result};

pub struct LitDataWriter {
    dir: PathBuf,
    keys: Vec<String>,
    formats: Vec<String>,
    types: Vec<String>,
    chunk_bytes: usize,
    items: Vec<Vec<u8>>,
    pending_bytes: usize,
    chunks: Vec<serde_json::Value>,
}

impl LitDataWriter {
    /// `fields`: (key, LitData serializer name, LitData type name) per leaf, in order.
    pub fn new(
        dir: impl AsRef<Path>,
        fields: &[(&str, &str, &str)],
        chunk_bytes: usize,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(LitDataWriter {
            dir,
            keys: fields.iter().map(|f| f.0.to_string()).collect(),
            formats: fields.iter().map(|f| f.1.to_string()).collect(),
            types: fields.iter().map(|f| f.2.to_string()).collect(),
            chunk_bytes,
            items: Vec::new(),
            pending_bytes: 0,
            chunks: Vec::new(),
        })
    }

    /// Add one sample, given each leaf already serialized.
    pub fn add(&mut self, leaves: &[&[u8]]) -> Result<()> {
        assert_eq!(leaves.len(), self.keys.len(), "one value per field");
        let mut item =
            Vec::with_capacity(4 * leaves.len() + leaves.iter().map(|l| l.len()).sum::<usize>());
        for leaf in leaves {
            item.extend_from_slice(&(leaf.len() as u32).to_le_bytes());
        }
        for leaf in leaves {
            item.extend_from_slice(leaf);
        }
        // Like LitData: a chunk is closed once adding the next item would exceed the target.
        if !self.items.is_empty() && self.pending_bytes + item.len() > self.chunk_bytes {
            self.flush()?;
        }
        self.pending_bytes += item.len();
        self.items.push(item);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let n = self.items.len();
        let header = 4 + 4 * (n + 1);
        let mut data = Vec::with_capacity(header + self.pending_bytes);
        data.extend_from_slice(&(n as u32).to_le_bytes());
        let mut offset = header as u32;
        data.extend_from_slice(&offset.to_le_bytes());
        for item in &self.items {
            offset += item.len() as u32;
            data.extend_from_slice(&offset.to_le_bytes());
        }
        for item in self.items.drain(..) {
            data.extend_from_slice(&item);
        }
        let filename = format!("chunk-0-{}.bin", self.chunks.len());
        let path = self.dir.join(&filename);
        fs::write(&path, &data).at(&path)?;
        self.chunks.push(json!({
            "chunk_bytes": data.len(),
            "chunk_size": n,
            "dim": null,
            "filename": filename,
        }));
        self.pending_bytes = 0;
        Ok(())
    }

    /// Write the last chunk and `index.json`.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        let leaf = json!({"type": null, "context": null, "children_spec": []});
        let spec = json!([1, {
            "type": "builtins.dict",
            "context": serde_json::to_string(&self.keys).expect("keys serialize"),
            "children_spec": vec![leaf; self.keys.len()],
        }]);
        let types: serde_json::Map<String, serde_json::Value> = self
            .keys
            .iter()
            .zip(&self.types)
            .map(|(k, t)| (k.clone(), json!(t)))
            .collect();
        let index = json!({
            "chunks": self.chunks,
            "config": {
                "chunk_bytes": self.chunk_bytes,
                "chunk_size": null,
                "compression": null,
                "compression_batch_size": null,
                "compression_level": null,
                "data_format": self.formats,
                "data_spec": spec.to_string(),
                "encryption": null,
                "ipc_compression": null,
                "item_loader": "PyTreeLoader",
                "types": types,
            },
            "updated_at": format!(
                "{:.7}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            ),
        });
        let path = self.dir.join(super::litdata::INDEX_FILENAME);
        fs::write(&path, serde_json::to_vec(&index).expect("index serializes")).at(&path)?;
        Ok(self.dir)
    }
}
