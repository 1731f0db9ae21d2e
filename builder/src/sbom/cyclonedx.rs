//! The CycloneDX 1.5 JSON document of an [`Inventory`]: a component per
//! Debian package (purl, `.deb` hash, licenses, source package) and per Keel
//! binary, the image as the metadata component, and the dependency graph.
//! The serial number is a name-based UUID derived from the content, so the
//! same inventory always gives the same document.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::dpkg::{resolve_depends, Package};
use super::{content_digest, purl, split_maintainer, Binary, Inventory};

/// The CycloneDX 1.5 document.
pub fn cyclonedx(inv: &Inventory) -> Value {
    let image_ref = format!("image:{}@{}", inv.image_name, inv.image_version);
    let mut components: Vec<Value> = inv
        .packages
        .iter()
        .map(|p| deb_component(p, &inv.distro))
        .collect();
    components.extend(
        inv.binaries
            .iter()
            .map(|b| binary_component(b, &inv.image_version)),
    );
    let deps = dependencies(inv, &image_ref, &components);
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial_number(inv),
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

/// `urn:uuid:` of a version-5-style UUID made from the content digest.
fn serial_number(inv: &Inventory) -> String {
    let d = content_digest(inv);
    format!(
        "urn:uuid:{}-{}-5{}-{:x}{}-{}",
        hex::encode(&d[0..4]),
        hex::encode(&d[4..6]),
        &hex::encode(&d[6..8])[1..],
        8 | (d[8] & 0x3),
        &hex::encode(&d[8..10])[1..],
        hex::encode(&d[10..16])
    )
}

/// One Debian package.
fn deb_component(p: &Package, distro: &str) -> Value {
    let mut c = json!({
        "type": "library",
        "bom-ref": purl(p, distro),
        "name": p.name,
        "version": p.version,
        "purl": purl(p, distro),
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
    c
}

/// A Keel program placed into the image.
fn binary_component(b: &Binary, image_version: &str) -> Value {
    json!({
        "type": "application",
        "bom-ref": format!("keel:{}", b.path),
        "name": b.path.rsplit('/').next().unwrap_or(&b.path),
        "version": image_version,
        "supplier": {"name": "Keel"},
        "hashes": [{"alg": "SHA-256", "content": b.sha256}],
        "licenses": [{"license": {"id": "Apache-2.0"}}],
        "properties": [{"name": "keel:path", "value": b.path}],
    })
}

/// The image depends on every component; each package on the installed
/// packages it depends on.
fn dependencies(inv: &Inventory, image_ref: &str, components: &[Value]) -> Vec<Value> {
    let by_name: BTreeMap<&str, &Package> =
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
    deps
}
