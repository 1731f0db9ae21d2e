//! The PostgreSQL starter: a query runs over TCP with the exposed URL.

use std::time::Instant;

#[test]
fn postgres_accepts_queries_on_its_url() {
    if keel_testbed::skip_unless(&["psql"]) {
        return;
    }
    let t = Instant::now();
    let Some(pg) = keel_testbed::or_skip(keel_testbed::Postgres::start()) else {
        return;
    };
    eprintln!("postgres ready in {:?} at {}", t.elapsed(), pg.url());
    pg.psql("keel", "CREATE TABLE t (id int primary key, v text)")
        .expect("create table");
    pg.psql("keel", "INSERT INTO t VALUES (1, 'hello')")
        .expect("insert");
    let out = pg
        .psql("keel", "SELECT v FROM t WHERE id = 1")
        .expect("select");
    assert_eq!(out.trim(), "hello");
    // A wrong password is refused: the URL's credentials are really checked.
    let bad = pg.url().replace(pg.password(), "wrong");
    let e = keel_cmd::CommandRunExt::run(
        std::process::Command::new("psql").args([&bad, "-X", "-c", "SELECT 1"]),
    )
    .expect_err("wrong password must fail");
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
}
