//! Pack YAML: `pack.yaml`, action metadata (`actions/*.yaml`) and action-chain files, parsed by
//! the loader's own functions, then as the server uses them (registered in the catalog,
//! listed as JSON, their defaults resolved).
//!
//! Input: one text, read as each kind of file. Properties: no panic, no hang (alias bombs
//! and deep nesting included); an action that loads can be listed and resolved.

use serde_json::Map;
use squall_core::action::Catalog;
use squall_core::params;
use squall_runner::chain::Chain;
use squall_runner::content;

pub fn body(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = content::pack_name(text, "fuzz");
    let _ = Chain::parse(text);
    action(text);
}

/// As an action's metadata file: registered, listed, and resolved with no parameters given.
fn action(text: &str) {
    let Ok(action) = content::parse_action("fuzz", text, "actions/fuzz.yaml") else { return };
    let ref_ = action.ref_.clone();
    let mut catalog = Catalog::builtin();
    if catalog.add_action(action).is_err() {
        return;
    }
    let action = catalog.action(&ref_).expect("an added action is in the catalog");
    let _ = squall_server::wire::action_json(action);
    if action.unavailable.is_none()
        && let Some(runner) = catalog.runner(&action.runner_type)
    {
        let _ = params::resolve(runner, action, &Map::new());
    }
}
