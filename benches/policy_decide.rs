//! One policy decision, four ways, in the same run: regorus's VM running
//! the bundle's decision rule on a ready input (`raw_rvm`: the floor of the
//! engine warden uses), warden's Rego path (`warden_rego`: input document,
//! a VM from the pool, run, shape check — what every action pays), regorus's
//! interpreter on a ready input (`raw_interpreter`, for reference) and the
//! native rules (`native`). Each iteration decides all 128 inputs of the
//! exhaustive matrix. Goal: warden_rego ≤ 1.3 × raw_rvm.
//!
//! Run: cargo bench --bench policy_decide

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
use warden_actors::authz::{
    matrix, Bundle, NativePolicy, PolicyEngine, RegoPolicy, DECISION_RULE, DEFAULT_EVAL_TIMEOUT,
};

fn decide(c: &mut Criterion) {
    let bundle = Bundle::embedded();
    let inputs = matrix::exhaustive();
    let mut group = c.benchmark_group("policy_decide");
    group.throughput(Throughput::Elements(inputs.len() as u64));

    let mut engine = regorus::Engine::new();
    for (path, text) in bundle.modules() {
        engine.add_policy(path.to_owned(), text.to_owned()).unwrap();
    }
    let ready: Vec<regorus::Value> = inputs.iter().map(|i| regorus::Value::from(i.document())).collect();
    let compiled = engine.compile_with_entrypoint(&DECISION_RULE.into()).unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[DECISION_RULE]).unwrap();
    let mut vm = RegoVM::new();
    vm.load_program(program);
    vm.set_max_instructions(usize::MAX);
    group.bench_function("raw_rvm", |b| {
        b.iter(|| {
            for input in &ready {
                vm.set_input(input.clone());
                black_box(vm.execute().unwrap());
            }
        })
    });
    group.bench_function("raw_interpreter", |b| {
        b.iter(|| {
            for input in &ready {
                engine.set_input(input.clone());
                black_box(engine.eval_rule(DECISION_RULE.to_owned()).unwrap());
            }
        })
    });

    let rego = RegoPolicy::compile(&bundle, DEFAULT_EVAL_TIMEOUT).unwrap();
    group.bench_function("warden_rego", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(rego.decide(input));
            }
        })
    });

    group.bench_function("native", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(NativePolicy.decide(input));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
