use super::*;

fn claim(token: bool, certified: bool) -> Claim {
    Claim {
        node_id: "n1".into(),
        store_id: "s1".into(),
        ek_sha256: "ek1".into(),
        ek_certified: certified,
        token_hash: token.then(|| "th".into()),
        ek_cert: None,
        require_approval: false,
    }
}

fn approval(mut c: Claim) -> Claim {
    c.require_approval = true;
    c
}

fn node(status: NodeStatus, ek: &str, store: &str) -> NodeRow {
    NodeRow {
        node_id: "n1".into(),
        store_id: store.into(),
        ek_sha256: ek.into(),
        status,
        release: "r 1".into(),
        updated_at: 0,
        revision: None,
        report: None,
        ek_cert: None,
    }
}

fn token(store: &str, expires_at: i64, used: bool) -> TokenRow {
    TokenRow {
        store_id: store.into(),
        expires_at,
        used,
        ek_sha256: None,
    }
}

fn bound(ek: &str) -> TokenRow {
    TokenRow {
        ek_sha256: Some(ek.into()),
        ..token("s1", 2000, false)
    }
}

fn allow(store: &str) -> AllowEntry {
    AllowEntry {
        ek_sha256: "ek1".into(),
        serial: "SN".into(),
        store_id: store.into(),
    }
}

#[test]
fn table() {
    use NodeStatus::*;
    use RejectCode as C;
    let now = 1000;
    let cases: Vec<(&str, Claim, Facts, Result<&str, C>)> = vec![
        (
            "unknown uncertified",
            claim(false, false),
            Facts::default(),
            Err(C::EkNotAllowed),
        ),
        (
            "unknown certified is refused, not queued (no squatting)",
            claim(false, true),
            Facts::default(),
            Err(C::EkNotAllowed),
        ),
        (
            "allow-listed",
            claim(false, false),
            Facts {
                allow: Some(allow("s1")),
                ..Default::default()
            },
            Ok("allow-list"),
        ),
        (
            "allow-listed other store",
            claim(false, true),
            Facts {
                allow: Some(allow("s2")),
                ..Default::default()
            },
            Err(C::EkNotAllowed),
        ),
        (
            "valid token from a certified TPM",
            claim(true, true),
            Facts {
                token: Some(token("s1", 2000, false)),
                ..Default::default()
            },
            Ok("token"),
        ),
        (
            "valid token from an allow-listed TPM",
            claim(true, false),
            Facts {
                token: Some(token("s1", 2000, false)),
                allow: Some(allow("s1")),
                ..Default::default()
            },
            Ok("token"),
        ),
        (
            "valid token from an uncertified, unlisted TPM",
            claim(true, false),
            Facts {
                token: Some(token("s1", 2000, false)),
                ..Default::default()
            },
            Err(C::EkNotAllowed),
        ),
        (
            "token bound to this EK",
            claim(true, true),
            Facts {
                token: Some(bound("ek1")),
                ..Default::default()
            },
            Ok("token"),
        ),
        (
            "token bound to another EK",
            claim(true, true),
            Facts {
                token: Some(bound("ek2")),
                ..Default::default()
            },
            Err(C::TokenInvalid),
        ),
        (
            "token in a store requiring approval queues",
            approval(claim(true, true)),
            Facts {
                token: Some(token("s1", 2000, false)),
                ..Default::default()
            },
            Ok("queue"),
        ),
        (
            "allow-list in a store requiring approval queues",
            approval(claim(false, false)),
            Facts {
                allow: Some(allow("s1")),
                ..Default::default()
            },
            Ok("queue"),
        ),
        (
            "unknown token",
            claim(true, true),
            Facts::default(),
            Err(C::TokenInvalid),
        ),
        (
            "used token",
            claim(true, false),
            Facts {
                token: Some(token("s1", 2000, true)),
                ..Default::default()
            },
            Err(C::TokenReused),
        ),
        (
            "expired token",
            claim(true, false),
            Facts {
                token: Some(token("s1", 1000, false)),
                ..Default::default()
            },
            Err(C::TokenInvalid),
        ),
        (
            "token other store",
            claim(true, false),
            Facts {
                token: Some(token("s2", 2000, false)),
                ..Default::default()
            },
            Err(C::TokenInvalid),
        ),
        (
            "admitted same ek",
            claim(false, true),
            Facts {
                node: Some(node(Admitted, "ek1", "s1")),
                allow: Some(allow("s1")),
                ..Default::default()
            },
            Err(C::IdentityConflict),
        ),
        (
            "other ek",
            claim(true, true),
            Facts {
                node: Some(node(Approved, "ek2", "s1")),
                token: Some(token("s1", 2000, false)),
                ..Default::default()
            },
            Err(C::IdentityConflict),
        ),
        (
            "revoked",
            claim(false, true),
            Facts {
                node: Some(node(Revoked, "ek1", "s1")),
                allow: Some(allow("s1")),
                ..Default::default()
            },
            Err(C::Revoked),
        ),
        (
            "approved",
            claim(false, false),
            Facts {
                node: Some(node(Approved, "ek1", "s1")),
                ..Default::default()
            },
            Ok("approved"),
        ),
        (
            "approved other store",
            claim(false, false),
            Facts {
                node: Some(node(Approved, "ek1", "s2")),
                ..Default::default()
            },
            Err(C::IdentityConflict),
        ),
        (
            "pending stays pending",
            claim(false, false),
            Facts {
                node: Some(node(Pending, "ek1", "s1")),
                ..Default::default()
            },
            Ok("queue"),
        ),
        (
            "pending then token stays pending",
            claim(true, true),
            Facts {
                node: Some(node(Pending, "ek1", "s1")),
                token: Some(token("s1", 2000, false)),
                ..Default::default()
            },
            Ok("queue"),
        ),
    ];
    for (name, c, f, want) in cases {
        let out = decide(&c, &f, now);
        let got = match &out.verdict {
            Verdict::Admit { via } => Ok(*via),
            Verdict::Queue(_) => Ok("queue"),
            Verdict::Reject(code, _) => Err(*code),
        };
        assert_eq!(got, want, "{name}");
        // A token is used up whenever it created or admitted the row.
        let consumed = c.token_hash.is_some() && got.is_ok() && f.node.is_none();
        assert_eq!(out.consume_token, consumed, "{name}");
    }
}

#[test]
fn status_names_roundtrip() {
    for s in [
        NodeStatus::Pending,
        NodeStatus::Approved,
        NodeStatus::Admitted,
        NodeStatus::Revoked,
    ] {
        assert_eq!(NodeStatus::parse(s.as_str()), Some(s));
    }
    assert_eq!(NodeStatus::parse("x"), None);
}
