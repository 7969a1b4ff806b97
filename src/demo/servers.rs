//! Private PostgreSQL and MariaDB servers started from the machine's own server binaries,
//! in a folder the demo owns (`target/ebis-demo` by default), on free loopback ports.
//!
//! Works as root too: PostgreSQL refuses to run as root, so its files belong to the
//! `postgres` system user and its processes run as that user (`setpriv`). Each run
//! starts from empty data folders; servers are stopped at the end unless kept.

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two running private servers.
pub struct PrivateServers {
    /// The folder holding their data and logs.
    pub dir: PathBuf,
    /// PostgreSQL port.
    pub pg_port: u16,
    /// MariaDB port.
    pub mysql_port: u16,
    pg_bin: PathBuf,
    as_postgres: bool,
    children: Vec<Child>,
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The newest PostgreSQL server binaries on the machine.
fn pg_bin() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).context(
        "PostgreSQL server binaries not found under /usr/lib/postgresql: install the Debian package `postgresql` (sudo apt-get install postgresql), or pass --warehouse URL",
    )
}

fn mariadb_bins() -> Result<(PathBuf, PathBuf)> {
    let server = [
        "/usr/sbin/mariadbd",
        "/usr/sbin/mysqld",
        "/usr/bin/mariadbd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    let install = [
        "/usr/bin/mariadb-install-db",
        "/usr/bin/mysql_install_db",
        "/usr/sbin/mariadb-install-db",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    match (server, install) {
        (Some(s), Some(i)) => Ok((s, i)),
        _ => bail!(
            "MariaDB server binaries not found (mariadbd, mariadb-install-db): install the Debian package `mariadb-server` (sudo apt-get install mariadb-server), or pass --source-url URL"
        ),
    }
}

fn run(cmd: &mut Command, what: &str, log: &Path) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let _ = std::fs::write(log, [out.stdout.as_slice(), out.stderr.as_slice()].concat());
    if !out.status.success() {
        bail!("{what} failed ({}); see {}", out.status, log.display());
    }
    Ok(())
}

impl PrivateServers {
    /// Starts both servers in `dir` from scratch; MariaDB with a row-based binary log
    /// when `binlog` (for binlog capture).
    pub fn start(dir: &Path, progress: &dyn Fn(&str), binlog: bool) -> Result<PrivateServers> {
        let pg_bin = pg_bin()?;
        let (mariadbd, install_db) = mariadb_bins()?;
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        stop_leftovers(&dir, &pg_bin);
        let as_postgres = is_root();
        let pg_data = dir.join("pg");
        let my_data = dir.join("mysql");
        for d in [&pg_data, &my_data] {
            if d.exists() {
                std::fs::remove_dir_all(d)?;
            }
            std::fs::create_dir_all(d)?;
        }
        let mut servers = PrivateServers {
            pg_port: free_port()?,
            mysql_port: free_port()?,
            dir: dir.clone(),
            pg_bin,
            as_postgres,
            children: Vec::new(),
        };
        progress("initializing PostgreSQL");
        init_pg(&servers.pg_bin, &pg_data, &dir, as_postgres)?;
        progress("initializing MariaDB");
        init_mariadb(&install_db, &my_data, as_postgres, &dir)?;
        progress("starting PostgreSQL and MariaDB");
        let mut pg = pg_server_command(
            &servers.pg_bin,
            &pg_data,
            servers.pg_port,
            &[],
            as_postgres,
            std::fs::File::create(dir.join("postgres.log"))?,
        );
        servers.children.push(spawn_detached(&mut pg, "postgres")?);
        let mut my = mariadb_command(
            &mariadbd,
            &dir,
            &my_data,
            servers.mysql_port,
            if binlog { &BINLOG } else { &[] },
            as_postgres,
        );
        servers.children.push(spawn_detached(&mut my, "mariadbd")?);
        Ok(servers)
    }

    /// Waits until both accept connections.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pg = tokio_postgres::connect(&self.pg_url(), tokio_postgres::NoTls)
                .await
                .is_ok();
            let my = match mysql_async::Conn::new(mysql_async::Opts::from_url(&self.mysql_url())?)
                .await
            {
                Ok(c) => {
                    let _ = c.disconnect().await;
                    true
                }
                Err(_) => false,
            };
            if pg && my {
                return Ok(());
            }
            for c in &mut self.children {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "a private server exited ({status}); see the logs in {}",
                        self.dir.display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the private servers did not answer within a minute; see the logs in {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The PostgreSQL admin URL.
    pub fn pg_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.pg_port)
    }

    /// The MariaDB admin URL.
    pub fn mysql_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.mysql_port)
    }

    /// How to stop kept servers.
    pub fn stop_hint(&self) -> String {
        let pg_ctl = self.pg_bin.join("pg_ctl");
        let prefix = if self.as_postgres {
            "setpriv --reuid=postgres --regid=postgres --init-groups -- "
        } else {
            ""
        };
        format!(
            "{prefix}{} -D {} stop -m fast; kill $(cat {})",
            pg_ctl.display(),
            self.dir.join("pg").display(),
            self.dir.join("mysql.pid").display()
        )
    }

    /// Leaves the servers running after this process exits.
    pub fn keep(mut self) {
        self.children.clear();
    }

    /// Stops both servers.
    pub fn stop(mut self) {
        // PostgreSQL: SIGINT is a fast shutdown; MariaDB shuts down on SIGTERM.
        for (c, sig) in self.children.iter().zip(["-INT", "-TERM"]) {
            signal(c.id(), sig);
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for PrivateServers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A PostgreSQL program of `bin`, run as the `postgres` user when `as_postgres`.
fn pg_tool(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    let bin = bin.join(tool);
    if as_postgres {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// Creates an empty PostgreSQL cluster in `data` (trust authentication, UTF-8, no
/// locale), owned by `postgres` when running as root; its log in `logs`.
fn init_pg(bin: &Path, data: &Path, logs: &Path, as_postgres: bool) -> Result<()> {
    if as_postgres {
        // The postgres user must be able to reach and own its folder.
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data),
            "chown",
            &logs.join("chown.log"),
        )?;
        make_traversable(logs);
    }
    let mut initdb = pg_tool(bin, "initdb", as_postgres);
    initdb.args(["-D"]).arg(data).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-locale",
    ]);
    run(&mut initdb, "initdb", &logs.join("initdb.log"))
}

/// The command that runs a private postgres on loopback `port`, its socket in `data`,
/// its log to `log`; `extra` adds settings (`wal_level=logical`), each passed as `-c`.
fn pg_server_command(
    bin: &Path,
    data: &Path,
    port: u16,
    extra: &[&str],
    as_postgres: bool,
    log: std::fs::File,
) -> Command {
    let mut pg = pg_tool(bin, "postgres", as_postgres);
    pg.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", data.display()))
        .args(["-c", "fsync=off", "-c", "max_connections=60"]);
    for setting in extra {
        pg.args(["-c", setting]);
    }
    pg.stdout(Stdio::null()).stderr(log);
    pg
}

/// One private PostgreSQL server: for tests that need a server configured unlike the
/// machine's own (settings only a server-wide configuration can give, such as a
/// synchronous standby that never answers). Stopped and its folder removed when dropped.
pub struct PrivatePostgres {
    /// Its folder (data, socket, logs).
    pub dir: PathBuf,
    /// Its loopback port.
    pub port: u16,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// Starts a fresh server in `dir` with extra settings (`name=value`), and waits
    /// until it accepts connections.
    pub async fn start(dir: &Path, extra: &[&str]) -> Result<PrivatePostgres> {
        let bin = pg_bin()?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir.join("data"))?;
        let dir = dir.canonicalize()?;
        let data = dir.join("data");
        let as_postgres = is_root();
        init_pg(&bin, &data, &dir, as_postgres)?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("postgres.log"))?;
        let mut cmd = pg_server_command(&bin, &data, port, extra, as_postgres, log);
        let child = spawn_detached(&mut cmd, "postgres")?;
        let mut server = PrivatePostgres {
            dir,
            port,
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            if tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
                .await
                .is_ok()
            {
                return Ok(server);
            }
            let log = server.dir.join("postgres.log");
            still_starting(&mut server.child, "PostgreSQL", &log, started)?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its admin URL (no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown.
        stop_child(&mut self.child, "-INT");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// After a look at a starting private server that found it not answering yet: an error
/// when it exited (see `log`) or a minute has passed since `started`.
fn still_starting(
    child: &mut Option<Child>,
    what: &str,
    log: &Path,
    started: Instant,
) -> Result<()> {
    if let Some(c) = child.as_mut()
        && let Some(status) = c.try_wait()?
    {
        bail!(
            "the private {what} exited ({status}); see {}",
            log.display()
        );
    }
    if started.elapsed() > Duration::from_secs(60) {
        bail!("the private {what} did not answer within a minute");
    }
    Ok(())
}

/// Stops a private server with `sig`, waiting up to 20 s before killing it.
fn stop_child(child: &mut Option<Child>, sig: &str) {
    if let Some(mut c) = child.take() {
        signal(c.id(), sig);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !matches!(c.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Creates an empty MariaDB data folder.
fn init_mariadb(install_db: &Path, data: &Path, as_root: bool, logs: &Path) -> Result<()> {
    let mut install = Command::new(install_db);
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", private_tmp(logs)?.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
    if as_root {
        install.arg("--user=root");
    }
    run(
        &mut install,
        "mariadb-install-db",
        &logs.join("install-db.log"),
    )
}

/// A server's own temporary folder, `<dir>/tmp`. In the shared /tmp, a MariaDB starting
/// up removes every `#sql*` file it finds: the temporary tables of another server being
/// initialized at the same moment (a demo beside a test's private server), whose
/// mariadb-install-db then fails with "Unknown table 'mysql.tmp_proxies_priv'".
fn private_tmp(dir: &Path) -> Result<PathBuf> {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    Ok(tmp)
}

/// The server options binlog capture needs (after `--skip-log-bin`, which they override).
pub const BINLOG: [&str; 6] = [
    "--log-bin=mariadb-bin",
    "--server-id=1",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--max-binlog-size=256M",
];

/// The command that runs a private mariadbd on loopback `port`, its socket, pid file and
/// error log in `dir`; `extra` adds server options (`--default-time-zone=+08:00`).
fn mariadb_command(
    mariadbd: &Path,
    dir: &Path,
    data: &Path,
    port: u16,
    extra: &[&str],
    as_root: bool,
) -> Command {
    let mut my = Command::new(mariadbd);
    my.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}", dir.join("mysql.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysql.pid").display()))
        .arg(format!("--log-error={}", dir.join("mariadb.err").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .args([
            "--skip-log-bin",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=200",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if as_root {
        my.arg("--user=root");
    }
    my
}

/// One private MariaDB server (no PostgreSQL): for tests that need a bureau server
/// configured unlike the machine's own, such as one in another time zone. Stopped and
/// its folder removed when dropped.
pub struct PrivateMariadb {
    /// Its folder (data, socket, logs).
    pub dir: PathBuf,
    /// Its loopback port.
    pub port: u16,
    child: Option<Child>,
}

impl PrivateMariadb {
    /// Starts a fresh server in `dir` with extra server options, and waits until it
    /// accepts connections.
    pub async fn start(dir: &Path, extra: &[&str]) -> Result<PrivateMariadb> {
        let (mariadbd, install_db) = mariadb_bins()?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let dir = dir.canonicalize()?;
        let data = dir.join("data");
        let as_root = is_root();
        init_mariadb(&install_db, &data, as_root, &dir)?;
        let port = free_port()?;
        let mut cmd = mariadb_command(&mariadbd, &dir, &data, port, extra, as_root);
        let child = spawn_detached(&mut cmd, "mariadbd")?;
        let mut server = PrivateMariadb {
            dir,
            port,
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            if let Ok(c) = mysql_async::Conn::new(mysql_async::Opts::from_url(&server.url())?).await
            {
                let _ = c.disconnect().await;
                return Ok(server);
            }
            let log = server.dir.join("mariadb.err");
            still_starting(&mut server.child, "MariaDB", &log, started)?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its root URL (no password).
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.port)
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        stop_child(&mut self.child, "-TERM");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a server in its own process group, so Ctrl-C in the terminal does not reach it
/// (the demo stops it in order, after the pipeline).
fn spawn_detached(cmd: &mut Command, what: &str) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    cmd.spawn().with_context(|| format!("starting {what}"))
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Stops servers a previous kept demo left in this folder.
fn stop_leftovers(dir: &Path, pg_bin: &Path) {
    if let Ok(pid) = std::fs::read_to_string(dir.join("mysql.pid")) {
        signal(pid.trim().parse().unwrap_or(0), "-TERM");
        std::thread::sleep(Duration::from_secs(2));
    }
    let pid_file = dir.join("pg").join("postmaster.pid");
    if let Ok(text) = std::fs::read_to_string(&pid_file)
        && let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
    {
        signal(pid, "-INT");
        let _ = pg_bin;
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Lets the postgres user walk down to the data folder (o+x on each parent).
fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Some(dir);
    while let Some(d) = p {
        if let Ok(m) = std::fs::metadata(d) {
            let mode = m.permissions().mode();
            if mode & 0o001 == 0 {
                let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001));
            }
        }
        p = d.parent();
    }
}
