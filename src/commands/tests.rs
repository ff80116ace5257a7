//! The command line's specification: the tree, flags from the settings
//! table and only the settings a command reads, nested subcommands.

use std::path::PathBuf;

use super::*;

fn parsed(args: &[&str]) -> Result<(Command, Sources), clap::Error> {
    parse(
        std::iter::once("activity-tracker").chain(args.iter().copied()),
        Sources::default(),
    )
}

#[test]
fn the_command_tree_is_well_formed() {
    command().debug_assert();
}

#[test]
fn every_profile_names_its_subcommand() {
    let tree = command();
    let names: Vec<&str> = tree.get_subcommands().map(|c| c.get_name()).collect();
    let profiles: Vec<&str> = Command::profiles().iter().map(|p| p.name).collect();
    assert_eq!(names, profiles);
}

#[test]
fn flags_come_from_the_settings_table() {
    let (command, sources) = parsed(&[
        "produce",
        "--events-per-second",
        "250",
        "--max-events",
        "7",
        "--truth-file",
        "t.jsonl",
    ])
    .unwrap();
    assert_eq!(command.profile().name, "produce");
    assert_eq!(sources.flags.get("EVENTS_PER_SECOND").map(String::as_str), Some("250"));
    assert_eq!(sources.flags.get("MAX_EVENTS").map(String::as_str), Some("7"));
    let Command::Produce(produce) = command else {
        panic!("not produce")
    };
    assert_eq!(
        format!("{produce:?}"),
        format!("Produce {{ truth_file: Some({:?}) }}", PathBuf::from("t.jsonl"))
    );
}

#[test]
fn settings_out_of_scope_are_not_flags() {
    let err = parsed(&["broker", "--velocity-threshold", "3"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    let err = parsed(&["produce", "--velocity-threshold", "3"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    // A group a command reads is all there: fraud reads IP privacy.
    assert!(parsed(&["fraud", "--ip-privacy", "truncate", "--velocity-threshold", "3"]).is_ok());
}

#[test]
fn nested_subcommands_take_their_parents_settings() {
    let (command, sources) =
        parsed(&["topics", "create", "--recreate", "--kafka-activities-partitions", "12"]).unwrap();
    assert!(matches!(
        command,
        Command::Topics(topics::Topics::Create { recreate: true })
    ));
    assert_eq!(
        sources.flags.get("KAFKA_ACTIVITIES_PARTITIONS").map(String::as_str),
        Some("12")
    );
    let (command, _) = parsed(&["dlq", "replay", "--reason", "malformed_json", "--dry-run"]).unwrap();
    assert_eq!(command.profile().name, "dlq");
    assert!(parsed(&["dlq", "replay", "--reason", "no_such_reason"]).is_err());
}

#[cfg(feature = "tools")]
#[test]
fn fleet_is_prepared_from_its_options() {
    let (command, _) = parsed(&["fleet", "--replicas", "3", "--plan", "2,kill,4", "--step", "5s"]).unwrap();
    let Command::Fleet(fleet) = command else {
        panic!("not fleet")
    };
    let debug = format!("{fleet:?}");
    assert!(debug.contains("replicas: 3"), "{debug}");
    assert!(debug.contains("step: 5s"), "{debug}");
    let err = parsed(&["fleet", "--step", "soon"]).unwrap_err();
    assert!(err.to_string().contains("--step \"soon\""), "{err}");
}
