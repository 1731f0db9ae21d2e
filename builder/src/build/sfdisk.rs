//! The partition table of a raw disk image as `sfdisk --json` reports it.
//!
//! The reproducibility check hashes each partition and the verity step
//! (see [`super::verity`]) finds and re-labels partitions; both read the
//! table through these types. [`Table::parse`] is pure and tested against a
//! real captured sample; [`Table::load`] runs sfdisk.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use keel_cmd::CommandRunExt as _;

#[derive(Debug, serde::Deserialize)]
struct Dump {
    partitiontable: Table,
}

/// A partition table.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Table {
    /// `gpt` or `dos`.
    pub label: String,
    pub sectorsize: Option<u64>,
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

/// One partition, in sectors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Partition {
    /// The device node sfdisk would use, `IMAGE2` or `IMAGEp2`: its trailing
    /// digits are the partition number.
    pub node: String,
    pub start: u64,
    pub size: u64,
    /// Type GUID, uppercase as sfdisk prints it.
    #[serde(rename = "type")]
    pub type_guid: String,
    /// Partition (unique) GUID, uppercase.
    pub uuid: Option<String>,
    pub name: Option<String>,
}

impl Table {
    /// Parses `sfdisk --json` output.
    pub fn parse(json: &str) -> Result<Table, serde_json::Error> {
        serde_json::from_str::<Dump>(json).map(|d| d.partitiontable)
    }

    /// Reads the partition table of `image`.
    pub fn load(image: &Path) -> anyhow::Result<Table> {
        let json = Command::new("sfdisk")
            .arg("--json")
            .arg(image)
            .run_get_string()?;
        Table::parse(&json).with_context(|| format!("parsing sfdisk's view of {}", image.display()))
    }

    /// Bytes per sector.
    pub fn sector_size(&self) -> u64 {
        self.sectorsize.unwrap_or(512)
    }

    /// (offset, length) of a partition in bytes.
    pub fn byte_range(&self, p: &Partition) -> (u64, u64) {
        (p.start * self.sector_size(), p.size * self.sector_size())
    }

    /// The first partition of the given type (case-insensitive GUID).
    pub fn find_type(&self, type_guid: &str) -> Option<&Partition> {
        self.partitions
            .iter()
            .find(|p| p.type_guid.eq_ignore_ascii_case(type_guid))
    }
}

impl Partition {
    /// The partition number (what `sfdisk --part-uuid IMAGE N` takes).
    pub fn number(&self) -> Option<u32> {
        let digits = self.node.len()
            - self
                .node
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .count();
        self.node[digits..].parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("testdata/sfdisk-test-tiny.json");

    #[test]
    fn parses_a_real_sfdisk_dump() {
        let t = Table::parse(SAMPLE).expect("parses");
        assert_eq!(t.label, "gpt");
        assert_eq!(t.sector_size(), 512);
        assert_eq!(t.partitions.len(), 3);
        let root = t
            .find_type("4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
            .expect("root");
        assert_eq!(root.name.as_deref(), Some("root"));
        assert_eq!(root.number(), Some(2));
        assert_eq!(t.byte_range(root), (411648 * 512, 1296928 * 512));
        assert_eq!(
            root.uuid.as_deref(),
            Some("E3809BC3-9A86-E07B-8982-7E97EF003F49")
        );
        let verity = t
            .find_type("2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5")
            .expect("verity");
        assert_eq!(verity.number(), Some(3));
        assert!(t
            .find_type("0fc63daf-8483-4772-8e79-3d69d8477de4")
            .is_none());
    }

    #[test]
    fn partition_number_comes_from_the_node_suffix() {
        let p = |node: &str| Partition {
            node: node.into(),
            start: 0,
            size: 0,
            type_guid: String::new(),
            uuid: None,
            name: None,
        };
        assert_eq!(p("disk.raw12").number(), Some(12));
        assert_eq!(p("/dev/loop0p3").number(), Some(3));
        assert_eq!(p("disk.raw").number(), None);
    }

    #[test]
    fn a_disk_without_partitions_parses() {
        let t = Table::parse(r#"{"partitiontable":{"label":"gpt","id":"X","device":"d","unit":"sectors","firstlba":34,"lastlba":100}}"#)
            .expect("parses");
        assert!(t.partitions.is_empty());
    }
}
