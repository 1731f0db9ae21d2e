//! The SPDX 2.3 JSON document of an [`Inventory`]: one package for the
//! image, one per Debian package (purl, `.deb` checksum, declared licenses)
//! and one per Keel binary, the image's CONTAINS and the packages'
//! DEPENDS_ON relationships, and an extracted-license entry per Debian
//! license short name that SPDX does not know (`LicenseRef-...`).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::dpkg::{resolve_depends, Package};
use super::{content_digest, purl, split_maintainer, Binary, Inventory};

fn spdx_id(kind: &str, name: &str) -> String {
    format!("SPDXRef-{kind}-{}", super::spdx_idstring(name))
}

fn pkg_ref(p: &Package) -> String {
    spdx_id("Package-deb", &format!("{}-{}", p.name, p.architecture))
}

/// The SPDX 2.3 document.
pub fn spdx(inv: &Inventory) -> Value {
    let digest = hex::encode(content_digest(inv));
    let image_ref = spdx_id("Image", &inv.image_name);
    let mut packages = vec![image_package(inv, &image_ref)];
    let mut rels = vec![relationship(
        "SPDXRef-DOCUMENT",
        "DESCRIBES",
        image_ref.clone(),
    )];
    let mut license_refs = BTreeSet::new();
    for p in &inv.packages {
        packages.push(deb_package(p, &inv.distro, &mut license_refs));
        rels.push(relationship(&image_ref, "CONTAINS", pkg_ref(p)));
    }
    for b in &inv.binaries {
        let id = spdx_id("Keel", &b.path);
        packages.push(binary_package(b, &id, &inv.image_version));
        rels.push(relationship(&image_ref, "CONTAINS", id));
    }
    rels.extend(depends_on(&inv.packages));
    let extracted = extracted_licenses(license_refs);
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

fn relationship(from: &str, kind: &str, to: String) -> Value {
    json!({
        "spdxElementId": from,
        "relationshipType": kind,
        "relatedSpdxElement": to,
    })
}

/// The package standing for the whole image (what the document DESCRIBES).
fn image_package(inv: &Inventory, image_ref: &str) -> Value {
    json!({
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
    })
}

/// One Debian package; the `LicenseRef-...` names it uses are added to
/// `license_refs` with the package's name (where its copyright file is).
fn deb_package(p: &Package, distro: &str, license_refs: &mut BTreeSet<(String, String)>) -> Value {
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
            "referenceLocator": purl(p, distro),
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
        pkg["licenseDeclared"] = json!(declared_licenses(p, license_refs));
    }
    pkg
}

/// The package's licenses as one SPDX expression (`A AND (B WITH C)`).
fn declared_licenses(p: &Package, license_refs: &mut BTreeSet<(String, String)>) -> String {
    for l in &p.licenses {
        for part in l.split(" WITH ") {
            if part.starts_with("LicenseRef-") {
                license_refs.insert((part.to_string(), p.name.clone()));
            }
        }
    }
    p.licenses
        .iter()
        .map(|l| {
            if l.contains(" WITH ") {
                format!("({l})")
            } else {
                l.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A Keel program placed into the image.
fn binary_package(b: &Binary, id: &str, image_version: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": b.path.rsplit('/').next().unwrap_or(&b.path),
        "versionInfo": image_version,
        "supplier": "Organization: Keel",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{"algorithm": "SHA256", "checksumValue": b.sha256}],
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "Apache-2.0",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "APPLICATION",
        "comment": format!("installed at {}", b.path),
    })
}

/// DEPENDS_ON between installed packages.
fn depends_on(packages: &[Package]) -> Vec<Value> {
    let mut rels = Vec::new();
    for (name, deps) in resolve_depends(packages) {
        let Some(p) = packages.iter().find(|p| p.name == name) else {
            continue;
        };
        for d in deps {
            if let Some(dp) = packages.iter().find(|q| q.name == d) {
                rels.push(relationship(&pkg_ref(p), "DEPENDS_ON", pkg_ref(dp)));
            }
        }
    }
    rels
}

/// One extracted-license entry per LicenseRef (the first package naming it).
fn extracted_licenses(license_refs: BTreeSet<(String, String)>) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    license_refs
        .into_iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .map(|(id, pkg)| {
            json!({
                "licenseId": id,
                "name": id.trim_start_matches("LicenseRef-"),
                "extractedText": format!("Debian license short name; full text in /usr/share/doc/{pkg}/copyright"),
            })
        })
        .collect()
}
