//! Prints an ONNX graph (with If/Loop subgraphs, indented) through tract's own protobuf parser:
//! `onnx_dump MODEL [max_nodes_per_graph]`. Also prints opsets and the op-type histogram.

use std::collections::BTreeMap;

use tract_onnx::pb::{GraphProto, ModelProto};
use tract_onnx::prelude::*;

fn walk(g: &GraphProto, depth: usize, max: usize, hist: &mut BTreeMap<String, usize>) {
    let pad = "  ".repeat(depth);
    for (i, n) in g.node.iter().enumerate() {
        *hist.entry(n.op_type.clone()).or_default() += 1;
        let subs: Vec<_> = n.attribute.iter().filter(|a| a.g.is_some()).collect();
        if i < max || !subs.is_empty() {
            println!("{pad}{} [{}] {:?} -> {:?}", n.op_type, n.name, n.input, n.output);
        }
        for a in subs {
            println!("{pad}  <{}>", a.name);
            walk(a.g.as_ref().unwrap(), depth + 2, max, hist);
        }
    }
}

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let max = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(40);
    let proto: ModelProto = onnx().proto_model_for_path(&args[1])?;
    for o in &proto.opset_import {
        println!("opset {:?} {}", o.domain, o.version);
    }
    let g = proto.graph.as_ref().unwrap();
    for i in &g.input {
        println!("input {}", i.name);
    }
    let mut hist = BTreeMap::new();
    walk(g, 0, max, &mut hist);
    println!("op histogram (all graphs): {hist:?}");
    Ok(())
}
