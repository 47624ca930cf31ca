//! `peerhost demo`: a community on a local network, in this process, with no Internet and no
//! arguments.
//!
//! 1. an embedded HyperDHT (a bootstrap node and two persistent nodes on 127.0.0.1);
//! 2. an instance: a community with 200 posts and a small web app, served and announced;
//! 3. two mirrors that find it on the DHT by the community key and copy every log;
//! 4. the instance goes offline;
//! 5. a follower looks the community up once, gets the latest posts and a file of the web app
//!    from the mirrors, verifies them, and prints them;
//! 6. bytes served per node.

use crate::term::safe;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use peerhost_daemon::{Daemon, DhtOptions, FileConfig, Followed, Network, Options, Range};
use peerhost_feed::community;
use peerhost_feed::{Entry, Post};
use peerhost_ids::Key;
use peerhost_store::Store;
use peerhost_swarm::{BootstrapOptions, Bootstrapper};

use crate::app::AppArgs;
use crate::daemon::human;

const POSTS: u64 = 200;
const TIMEOUT: Duration = Duration::from_secs(60);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Create the community "demo" in `store`: four logs, `POSTS` posts, the default web app (see
/// [`crate::app`]: `--app DIR`, else web/app/dist, else its sources built in). Returns the
/// community key and what the app is.
fn create_community(store: &Store, app: &AppArgs) -> anyhow::Result<(Key, String)> {
    let source = app.source()?;
    let t0 = now_us();
    let community::Created {
        key,
        mut posts,
        mut comments,
        assets: mut app_log,
        index: mut ix,
        ..
    } = community::create(
        store,
        "demo",
        Some("The demo community".into()),
        "Posts served by its readers.".into(),
        t0,
    )?;
    let entries: Vec<Vec<u8>> = (0..POSTS)
        .map(|i| {
            Entry::from(Post {
                id: peerhost_feed::new_id(&posts.key().0, i),
                title: format!("Post number {}", i + 1),
                body: format!(
                    "This is post {} of the demo community, signed by the instance.",
                    i + 1
                ),
                published_us: t0 + i,
                ..Default::default()
            })
            .encode()
        })
        .collect::<Result<_, _>>()?;
    posts.append(&entries)?;
    peerhost_feed::index::catch_up(&mut ix, &mut posts, &mut comments, |_, _| {})?;
    let what = match &source {
        Some(source) => {
            let summary = crate::community::publish_to(&mut app_log, source.dir())
                .with_context(|| format!("cannot publish the web app {}", source.describe()))?;
            format!("web app: {}: {summary}", source.describe())
        }
        None => "no web app".to_owned(),
    };
    Ok((key, what))
}

async fn daemon(
    dir: &std::path::Path,
    testnet: &Bootstrapper,
    announce: bool,
) -> anyhow::Result<Daemon> {
    let dht = DhtOptions::new(vec![testnet.addr().into()]).with_host(Ipv4Addr::LOCALHOST);
    let opts = Options::new(dir, FileConfig::default())
        .with_network(Network::Dht(dht))
        .with_announce(announce);
    Ok(Daemon::start(opts).await?)
}

fn served(d: &Daemon) -> u64 {
    d.node()
        .log_stats()
        .values()
        .map(|s| s.uploaded_bytes)
        .sum()
}

pub(crate) fn run(app: &AppArgs) -> anyhow::Result<()> {
    let rt = crate::net::runtime_logging("warn")?;
    rt.block_on(demo(app))
}

async fn demo(app: &AppArgs) -> anyhow::Result<()> {
    if app.no_app {
        bail!("the demo shows the community's web app too: run it without --no-app");
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("peerhost-demo-")
        .tempdir()?;
    let dir = |n: &str| tmp.path().join(n);
    println!("peerhost demo — everything runs in this process on 127.0.0.1");
    println!("stores: {} (temporary)\n", tmp.path().display());

    let testnet = Bootstrapper::bind(
        BootstrapOptions::new(Ipv4Addr::LOCALHOST, 0).with_bind(Ipv4Addr::LOCALHOST),
    )
    .await?;
    println!(
        "1. a local HyperDHT: a bootstrap node on {} (it stores records too)",
        testnet.addr()
    );

    let (key, app_what) = {
        let store = Store::open(dir("instance")).context("cannot open the instance store")?;
        create_community(&store, app)?
    };
    let instance = daemon(&dir("instance"), &testnet, true).await?;
    println!(
        "2. the instance publishes community {}\n   ({POSTS} posts) and announces it\n   {app_what}",
        key.to_z32()
    );

    let mirrors = [
        daemon(&dir("mirror-a"), &testnet, true).await?,
        daemon(&dir("mirror-b"), &testnet, true).await?,
    ];
    for m in &mirrors {
        m.mirror(key, true).await?;
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut done = true;
        for m in &mirrors {
            let st = m.status(true).await;
            done &= st.logs.len() >= 4
                && st.logs.iter().filter(|l| l.community.is_some()).all(|l| {
                    l.part.as_deref() == Some("comments") || (l.length > 0 && l.held == l.length)
                });
        }
        if done {
            break;
        }
        if Instant::now() > deadline {
            bail!("the mirrors did not complete within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "3. two mirrors found it on the DHT and copied all of it ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let instance_served = served(&instance);
    instance.shutdown(Duration::from_secs(1)).await;
    drop(instance);
    println!(
        "4. the instance goes offline (it served {} to the mirrors)",
        human(instance_served)
    );

    let before: Vec<u64> = mirrors.iter().map(served).collect();
    let follower = daemon(&dir("follower"), &testnet, false).await?;
    let t = Instant::now();
    let Followed::Community {
        community, posts, ..
    } = follower.follow(key, Range::last(10), TIMEOUT).await?
    else {
        bail!("the demo key is not a community");
    };
    let mut page = Vec::new();
    let asset = follower
        .fetch_asset(&community, "index.html", &mut page, TIMEOUT)
        .await?;
    println!(
        "5. a follower looked the community up once and read, in {:.2} s, verified:",
        t.elapsed().as_secs_f64()
    );
    println!("\n   {}", safe(&community.descriptor.title));
    for p in &posts {
        println!("   · {}  (posts block {})", safe(&p.post.title), p.index);
    }
    println!(
        "   · web app: index.html, {} bytes, SHA-256 {}… checked",
        asset.size,
        &hex::encode(&asset.sha256)[..16]
    );

    println!("\n6. bytes served to the follower, per node:");
    println!("   instance   {:>10}  (offline)", human(0));
    for (i, m) in mirrors.iter().enumerate() {
        let name = if i == 0 { "mirror A" } else { "mirror B" };
        println!(
            "   {name}   {:>10}",
            human(served(m).saturating_sub(before[i]))
        );
    }
    let got: u64 = follower
        .node()
        .log_stats()
        .values()
        .map(|s| s.downloaded_bytes)
        .sum();
    println!(
        "   follower got {} (every block checked against the community's signed logs)",
        human(got)
    );
    follower.shutdown(Duration::from_millis(500)).await;
    for m in &mirrors {
        m.shutdown(Duration::from_millis(500)).await;
    }
    println!(
        "\ndone in {:.1} s: `peerhost serve`, `mirror KEY` and `follow KEY` do the same on the public DHT",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
