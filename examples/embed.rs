//! How a Rust VPN client embeds the kill switch.
//!
//! ```sh
//! cargo run --example embed -- --dry-run 198.51.100.7 2001:db8::7   # the plan, no root
//! sudo ip netns exec TESTNS target/debug/examples/embed start 198.51.100.7
//! ```
//!
//! `start`, `status` and `stop` change the firewall of the network namespace the program runs
//! in: try them in a throwaway namespace, not on your own machine's network.

use bitmask_root::firewall;
use bitmask_root::policy::{parse_gateway, LanMode, Policy};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let action = args.next().unwrap_or_else(|| "--dry-run".into());
    let mut builder = Policy::builder().lan(LanMode::Private);
    for gw in args {
        builder = builder.gateway(parse_gateway(&gw)?);
    }
    match action.as_str() {
        "--dry-run" => print!("{}", firewall::dry_run(&builder.build()?).await?),
        "start" => {
            let applied = firewall::start(&builder.build()?).await?;
            println!("started, rules fingerprint {}", applied.fingerprint);
        }
        "status" => println!("{}", firewall::status().await?),
        "stop" => println!("was running: {}", firewall::stop()?),
        other => {
            return Err(
                format!("unknown action {other}: use --dry-run, start, status or stop").into(),
            )
        }
    }
    Ok(())
}
