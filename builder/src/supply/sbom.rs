//! SPDX 2.3 and CycloneDX 1.5 JSON documents built from the image's package
//! database ([`super::dpkg`]) plus the Keel binaries placed into the image.
//!
//! The documents are written with serde from the types below rather than
//! through an SBOM crate: the output must be byte-for-byte reproducible
//! (timestamps from SOURCE_DATE_EPOCH, serial number and namespace derived from
//! the content), and both are validated against the official JSON schemas
//! (CycloneDX) and the official SPDX validator in the tests.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::dpkg::{resolve_depends, Package};

/// File names of the SBOMs, inside the image under [`SBOM_DIR`] and beside it.
pub const SPDX_FILE: &str = "sbom.spdx.json";
/// See [`SPDX_FILE`].
pub const CYCLONEDX_FILE: &str = "sbom.cdx.json";
/// Where the SBOMs live inside the image.
pub const SBOM_DIR: &str = "usr/share/keel/sbom";

/// A Keel binary found in the image tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// Path inside the image, absolute (`/usr/bin/keel-bootstrap`).
    pub path: String,
    pub sha256: String,
}

/// Everything an SBOM describes.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub image_name: String,
    pub image_version: String,
    /// `debian-12` style distro qualifier for purls.
    pub distro: String,
    pub packages: Vec<Package>,
    pub binaries: Vec<Binary>,
    /// Document creation time (RFC 3339, UTC, seconds).
    pub created: String,
    pub tool_version: String,
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=DISTRO` (purl-spec deb type).
pub fn purl(p: &Package, distro: &str) -> String {
    let enc = |s: &str| {
        s.chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '~' => c.to_string(),
                _ => format!("%{:02X}", c as u32),
            })
            .collect::<String>()
    };
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro={}",
        enc(&p.name),
        enc(&p.version),
        enc(&p.architecture),
        enc(distro)
    )
}

/// Formats a UNIX time as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86400);
    let secs = epoch.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn spdx_id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{clean}")
}

fn pkg_ref(p: &Package) -> String {
    spdx_id("Package-deb", &format!("{}-{}", p.name, p.architecture))
}

/// Splits `Name <mail>` into its parts.
fn split_maintainer(m: &str) -> (String, Option<String>) {
    match m.split_once('<') {
        Some((n, rest)) => (
            n.trim().to_string(),
            Some(rest.trim_end_matches('>').trim().to_string()),
        ),
        None => (m.trim().to_string(), None),
    }
}

fn content_digest(inv: &Inventory) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(inv.image_name.as_bytes());
    h.update([0]);
    h.update(inv.image_version.as_bytes());
    for p in &inv.packages {
        h.update(format!("\0{}\0{}\0{}", p.name, p.version, p.architecture));
    }
    for b in &inv.binaries {
        h.update(format!("\0{}\0{}", b.path, b.sha256));
    }
    h.finalize().into()
}

/// The SPDX 2.3 document.
pub fn spdx(inv: &Inventory) -> Value {
    let digest = hex::encode(content_digest(inv));
    let image_ref = spdx_id("Image", &inv.image_name);
    let mut packages = vec![json!({
        "SPDXID": image_ref,
        "name": inv.image_name,
        "versionInfo": inv.image_version,
        "supplier": "NOASSERTION",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    })];
    let mut rels = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_ref,
    })];
    let mut license_refs = std::collections::BTreeSet::new();
    for p in &inv.packages {
        let mut pkg = json!({
            "SPDXID": pkg_ref(p),
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("built from Debian source package {} {}", p.source,
                p.source_version.as_deref().unwrap_or(&p.version)),
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p, &inv.distro),
            }],
        });
        pkg["supplier"] = match &p.maintainer {
            Some(m) => {
                let (n, mail) = split_maintainer(m);
                json!(format!("Organization: {n} ({})", mail.unwrap_or_default()))
            }
            None => json!("NOASSERTION"),
        };
        if let Some(h) = &p.deb_sha256 {
            pkg["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": h}]);
        }
        if let Some(h) = &p.homepage {
            pkg["homepage"] = json!(h);
        }
        if !p.licenses.is_empty() {
            for l in &p.licenses {
                for part in l.split(" WITH ") {
                    if part.starts_with("LicenseRef-") {
                        license_refs.insert((part.to_string(), p.name.clone()));
                    }
                }
            }
            let expr = p
                .licenses
                .iter()
                .map(|l| {
                    if l.contains(" WITH ") {
                        format!("({l})")
                    } else {
                        l.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            pkg["licenseDeclared"] = json!(expr);
        }
        packages.push(pkg);
        rels.push(json!({
            "spdxElementId": image_ref,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": pkg_ref(p),
        }));
    }
    for b in &inv.binaries {
        let id = spdx_id("Keel", &b.path);
        packages.push(json!({
            "SPDXID": id,
            "name": b.path.rsplit('/').next().unwrap_or(&b.path),
            "versionInfo": inv.image_version,
            "supplier": "Organization: Keel",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": b.sha256}],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "Apache-2.0",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "APPLICATION",
            "comment": format!("installed at {}", b.path),
        }));
        rels.push(json!({
            "spdxElementId": image_ref,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    for (name, deps) in resolve_depends(&inv.packages) {
        let Some(p) = inv.packages.iter().find(|p| p.name == name) else {
            continue;
        };
        for d in deps {
            if let Some(dp) = inv.packages.iter().find(|q| q.name == d) {
                rels.push(json!({
                    "spdxElementId": pkg_ref(p),
                    "relationshipType": "DEPENDS_ON",
                    "relatedSpdxElement": pkg_ref(dp),
                }));
            }
        }
    }
    // One extracted-license entry per LicenseRef (the first package naming it).
    let mut seen = std::collections::BTreeSet::new();
    let extracted: Vec<Value> = license_refs
        .into_iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .map(|(id, pkg)| {
            json!({
                "licenseId": id,
                "name": id.trim_start_matches("LicenseRef-"),
                "extractedText": format!("Debian license short name; full text in /usr/share/doc/{pkg}/copyright"),
            })
        })
        .collect();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", inv.image_name, inv.image_version),
        "documentNamespace": format!("https://keel.invalid/spdx/{}-{}-{digest}",
            inv.image_name, inv.image_version),
        "creationInfo": {
            "created": inv.created,
            "creators": [format!("Tool: keel-{}", inv.tool_version)],
        },
        "packages": packages,
        "relationships": rels,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = json!(extracted);
    }
    doc
}

/// The CycloneDX 1.5 document.
pub fn cyclonedx(inv: &Inventory) -> Value {
    let d = content_digest(inv);
    let serial = format!(
        "urn:uuid:{}-{}-5{}-{:x}{}-{}",
        hex::encode(&d[0..4]),
        hex::encode(&d[4..6]),
        &hex::encode(&d[6..8])[1..],
        8 | (d[8] & 0x3),
        &hex::encode(&d[8..10])[1..],
        hex::encode(&d[10..16])
    );
    let image_ref = format!("image:{}@{}", inv.image_name, inv.image_version);
    let mut components = Vec::new();
    for p in &inv.packages {
        let mut c = json!({
            "type": "library",
            "bom-ref": purl(p, &inv.distro),
            "name": p.name,
            "version": p.version,
            "purl": purl(p, &inv.distro),
            "properties": [
                {"name": "keel:deb:source", "value": p.source},
                {"name": "keel:deb:source-version",
                 "value": p.source_version.as_deref().unwrap_or(&p.version)},
                {"name": "keel:deb:architecture", "value": p.architecture},
            ],
        });
        if let Some(m) = &p.maintainer {
            let (n, mail) = split_maintainer(m);
            let mut s = json!({"name": n});
            if let Some(mail) = mail {
                s["contact"] = json!([{"name": n, "email": mail}]);
            }
            c["supplier"] = s;
        }
        if let Some(h) = &p.deb_sha256 {
            c["hashes"] = json!([{"alg": "SHA-256", "content": h}]);
        }
        if !p.licenses.is_empty() {
            let lic: Vec<Value> = p
                .licenses
                .iter()
                .map(|l| {
                    if l.starts_with("LicenseRef-") || l.contains(' ') {
                        json!({"license": {"name": l}})
                    } else {
                        json!({"license": {"id": l}})
                    }
                })
                .collect();
            c["licenses"] = json!(lic);
        }
        components.push(c);
    }
    for b in &inv.binaries {
        components.push(json!({
            "type": "application",
            "bom-ref": format!("keel:{}", b.path),
            "name": b.path.rsplit('/').next().unwrap_or(&b.path),
            "version": inv.image_version,
            "supplier": {"name": "Keel"},
            "hashes": [{"alg": "SHA-256", "content": b.sha256}],
            "licenses": [{"license": {"id": "Apache-2.0"}}],
            "properties": [{"name": "keel:path", "value": b.path}],
        }));
    }
    let by_name: std::collections::BTreeMap<&str, &Package> =
        inv.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut deps = vec![json!({
        "ref": image_ref,
        "dependsOn": components.iter().filter_map(|c| c["bom-ref"].as_str()).collect::<Vec<_>>(),
    })];
    for (name, ds) in resolve_depends(&inv.packages) {
        let Some(p) = by_name.get(name.as_str()) else {
            continue;
        };
        let on: Vec<String> = ds
            .iter()
            .filter_map(|d| by_name.get(d.as_str()).map(|q| purl(q, &inv.distro)))
            .collect();
        deps.push(json!({"ref": purl(p, &inv.distro), "dependsOn": on}));
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            "timestamp": inv.created,
            "tools": {"components": [{"type": "application", "name": "keel", "version": inv.tool_version}]},
            "component": {"type": "operating-system", "bom-ref": image_ref,
                          "name": inv.image_name, "version": inv.image_version},
        },
        "components": components,
        "dependencies": deps,
    })
}
