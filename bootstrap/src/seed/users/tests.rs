//! Table tests: every `users:` form cloud-init 22.4 accepts, and every
//! entry Keel refuses, with the message.

use crate::seed::user_data::parse;

fn names(ud: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let (cfg, w) = parse("user-data", ud).map_err(|e| e.to_string())?;
    Ok((cfg.users.into_iter().map(|u| u.name).collect(), w))
}

#[test]
fn accepted_forms() {
    let cases: &[(&str, &[&str])] = &[
        ("users: [default]\n", &[]),
        ("users:\n  - default\n", &[]),
        ("users:\n  - alice\n", &["alice"]),
        ("users:\n  - default\n  - alice\n", &["alice"]),
        ("users: default\n", &[]),
        ("users: alice\n", &["alice"]),
        ("users: \"default, alice\"\n", &["alice"]),
        ("users: 'alice,bob , ,carol'\n", &["alice", "bob", "carol"]),
        ("users:\n  - 'alice, bob'\n", &["alice", "bob"]),
        ("users:\n  - [alice, bob]\n  - carol\n", &["alice", "bob", "carol"]),
        ("users:\n  - alice\n  - name: bob\n", &["alice", "bob"]),
        ("users:\n  - alice\n  - alice\n", &["alice"]),
        ("users:\n  - alice\n  - name: alice\n    shell: /bin/bash\n", &["alice"]),
        (
            "users:\n  alice: {groups: adm}\n  bob: true\n  carol: 'yes'\n  dave: false\n  erin: 'no'\n  frank: 1\n",
            &["alice", "bob", "carol", "frank"],
        ),
        ("users:\n  default: true\n  alice: {}\n", &["alice"]),
        ("users: []\n", &[]),
        ("users:\n", &[]),
        ("users:\n  - name: svc$\n", &["svc$"]),
        ("users:\n  - name: Tech.Ops_1\n", &["Tech.Ops_1"]),
    ];
    for (users, want) in cases {
        let ud = format!("#cloud-config\n{users}");
        let (got, w) = names(&ud).unwrap_or_else(|e| panic!("{users:?}: {e}"));
        assert_eq!(got, *want, "{users:?}");
        assert!(w.is_empty(), "{users:?}: {w:?}");
    }
}

#[test]
fn settings_merge_and_spelling() {
    let ud = "#cloud-config\nusers:\n  - alice\n  - name: alice\n    groups: adm\n    lock-passwd: false\n  - name: alice\n    shell: /bin/zsh\n    groups: [wheel, ' adm ']\n";
    let (cfg, w) = parse("user-data", ud).expect("parses");
    assert!(w.is_empty(), "{w:?}");
    let a = &cfg.users[0];
    assert_eq!(cfg.users.len(), 1);
    assert_eq!(a.shell.as_deref(), Some("/bin/zsh"));
    assert_eq!(a.groups, ["wheel", "adm"], "the later entry wins");
    assert_eq!(a.lock_passwd, Some(false), "lock-passwd = lock_passwd");

    let ud = "#cloud-config\nusers:\n  - name: b\n    groups: {adm: null, wheel: null}\n    sudo: [ALL=(ALL) ALL, 'ALL=(ALL) NOPASSWD: /bin/ls']\n";
    let (cfg, _) = parse("user-data", ud).expect("parses");
    assert_eq!(cfg.users[0].groups, ["adm", "wheel"]);
    assert_eq!(cfg.users[0].sudo.len(), 2);

    let ud =
        "#cloud-config\nusers:\n  - name: default\n    ssh_authorized_keys: [ssh-ed25519 AAAA x]\n";
    let (cfg, w) = parse("user-data", ud).expect("parses");
    assert!(cfg.users.is_empty());
    assert!(
        w.len() == 1 && w[0].contains("users[0]: settings for cloud-init's `default` user ignored"),
        "{w:?}"
    );
}

#[test]
fn refused_entries() {
    let cases: &[(&str, &str)] = &[
        ("users: 7\n", "user-data: users: a number is not a list, a mapping or a comma-separated string of names"),
        ("users: true\n", "users: a boolean is not a list"),
        ("users:\n  - 7\n", "user-data: users[0]: a number is not a user (write a name or name: ...)"),
        ("users:\n  - ~\n", "users[0]: nothing (null) is not a user"),
        ("users:\n  - [alice, 7]\n", "users[0]: a list of names holds a number, not a name"),
        ("users:\n  - gecos: nobody\n", "user-data: users[0]: a user needs `name:`"),
        ("users:\n  - name: [a]\n", "users[0]: name Sequence"),
        ("users:\n  alice: [adm]\n", "users.alice: give settings (a mapping) or true, not a list"),
        ("users:\n  - 'bad:name'\n", "users[0]: \"bad:name\" is not a valid user name"),
        ("users:\n  - name: -x\n", "\"-x\" is not a valid user name"),
        ("users:\n  - name: '1000'\n", "\"1000\" is not a valid user name"),
        ("users:\n  - name: a b\n", "\"a b\" is not a valid user name"),
        ("users:\n  - name: abcdefghijabcdefghijabcdefghijabc\n", "is not a valid user name"),
        ("users:\n  - name: a\n    groups: 'adm, bad group'\n", "users[0]: \"bad group\" is not a valid group name"),
        ("users:\n  - name: a\n    sudo: true\n", "sudo: true is not a rule"),
        ("users:\n  - name: a\n    sudo: \"ALL=(ALL) ALL\\nroot ALL=(ALL) ALL\"\n", "sudo rule"),
        ("users:\n  - name: a\n    shell: bash\n", "users[0]: shell \"bash\" must be an absolute path without '..'"),
        ("users:\n  - name: a\n    homedir: /home/../etc\n", "homedir \"/home/../etc\" must be an absolute path"),
        ("users:\n  - name: a\n    gecos: 'a:b'\n", "gecos \"a:b\" must not contain a line break or ':'"),
        ("users:\n  - name: a\n    ssh_authorized_keys: ['']\n", "users[0]: ssh key \"\" is empty or spans lines"),
        ("users:\n  - name: a\n    system: maybe\n", "users[0]: invalid type"),
        ("ssh_authorized_keys: [\"a\\nb\"]\n", "user-data: ssh_authorized_keys: ssh key"),
    ];
    for (users, want) in cases {
        let ud = format!("#cloud-config\n{users}");
        let e = names(&ud).expect_err(users);
        assert!(e.contains(want), "{users:?}:\n got  {e}\n want {want}");
    }
}

#[test]
fn unknown_user_keys_warn() {
    let ud = "#cloud-config\nusers:\n  alice:\n    plain_text_passwd: x\n  bob: {ssh-import-id: [gh:bob]}\n";
    let (_, w) = names(ud).expect("parses");
    let w = w.join("\n");
    assert!(w.contains("`users.alice.plain_text_passwd`"), "{w}");
    assert!(w.contains("`users.bob.ssh_import_id`"), "{w}");
}
