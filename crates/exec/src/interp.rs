//! The interpreter: an [`Executor`] is compiled once from a model (topological order, constants
//! materialised, every op checked for support, last uses computed; an initializer read only through
//! prepared state, such as a packed conv weight, is not kept) and then runs it on named inputs,
//! freeing each intermediate value right after its last reader, optionally showing every value to an
//! observer as it is produced.

use crate::error::{ExecError, OpError};
use crate::ops::{self, Activation, OpCtx, PrepInput, Prepared};
use crate::profile::Profile;
use ndarray::{Axis, Slice};
use qtool_ir::{DimValue, Model, Op, ValueId};
use qtool_tensor::{DType, Tensor, dispatch_tensor};
use std::time::Instant;

/// The opset assumed for the default domain when a model imports none.
const DEFAULT_ONNX_OPSET: i64 = 21;

/// How to build an [`Executor`].
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Worker threads for the executor's own pool; `None` uses every core.
    pub threads: Option<usize>,
}

/// Counters of one run (see [`Executor::run_with_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Nodes evaluated (Constant nodes, folded at build time, are not counted).
    pub nodes_run: usize,
    /// Intermediate values (and graph inputs) dropped after their last use.
    pub values_freed: usize,
    /// Largest number of run-time values alive at once (constants excluded).
    pub peak_live_values: usize,
}

#[derive(Debug)]
struct Step {
    node: String,
    op: Op,
    opset: i64,
    inputs: Vec<Option<usize>>,
    outputs: Vec<Option<usize>>,
    /// Outputs were computed at build time (Constant nodes): only reported to the observer.
    folded: bool,
    /// Slots to drop once this step has run.
    free_after: Vec<usize>,
    /// State computed once from the constant inputs (packed weights), see [`ops::prepare`].
    prepared: Option<Box<dyn Prepared>>,
    /// The readers of this step's output form an activation that this step can apply in its
    /// output stage: the activation and the steps it replaces (the last one's output receives the
    /// result); used when no observer needs the intermediate values.
    fuse: Option<(Activation, Vec<usize>)>,
}

#[derive(Debug)]
struct InputSpec {
    name: String,
    slot: usize,
    dtype: Option<DType>,
    shape: Option<Vec<DimValue>>,
    /// False for inputs that have an initializer as default.
    required: bool,
    /// Free right after the inputs are read in (no node reads it and it is no graph output).
    unused: bool,
}

/// A compiled model, ready to run. Cheap to share across threads (`run` takes `&self`).
pub struct Executor {
    steps: Vec<Step>,
    /// Per value slot: initializers and folded Constant outputs.
    consts: Vec<Option<Tensor>>,
    names: Vec<String>,
    inputs: Vec<InputSpec>,
    outputs: Vec<(String, usize)>,
    pool: rayon::ThreadPool,
    threads: usize,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("nodes", &self.steps.len())
            .field("threads", &self.threads)
            .finish()
    }
}

/// The callback that sees every value of a run.
type Observer<'a> = &'a mut dyn FnMut(&str, &Tensor);

fn slot(v: ValueId) -> usize {
    v.0 as usize
}

fn shape_str(dims: &Option<Vec<DimValue>>) -> String {
    match dims {
        None => "(any shape)".to_string(),
        Some(d) => {
            let parts: Vec<String> = d
                .iter()
                .map(|d| match d {
                    DimValue::Known(v) => v.to_string(),
                    DimValue::Param(p) => p.clone(),
                    DimValue::Unknown => "?".to_string(),
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

impl Executor {
    /// Compiles `model`: sorts the nodes, converts initializers and Constant nodes to tensors, checks
    /// that every op is supported and computes when each value can be freed.
    pub fn new(model: &Model, options: ExecOptions) -> Result<Executor, ExecError> {
        let mut g = model.graph.clone();
        g.topo_sort().map_err(|e| ExecError::Model(e.to_string()))?;
        g.validate().map_err(|e| ExecError::Model(e.to_string()))?;
        let n_slots = g.value_ids().count();
        let names: Vec<String> = g.value_ids().map(|v| g.value_name(v).to_string()).collect();
        let mut consts: Vec<Option<Tensor>> = vec![None; n_slots];
        // Initializers are converted to tensors when their first reader is prepared (below), so
        // that a weight that only its packed form needs is converted, packed and dropped before
        // the next one is converted: the build never holds all weights twice.
        let mut unconverted = vec![false; n_slots];
        for &v in &g.initializers {
            unconverted[slot(v)] = true;
        }
        let convert = |v: usize, consts: &mut [Option<Tensor>], unconverted: &mut [bool]| {
            if !std::mem::take(&mut unconverted[v]) {
                return Ok(());
            }
            let t = g
                .initializer(ValueId(v as u32))
                .expect("listed initializer")
                .to_tensor()
                .map_err(|e| ExecError::Model(format!("initializer '{}': {e}", names[v])))?;
            consts[v] = Some(t);
            Ok::<(), ExecError>(())
        };
        let threads = options
            .threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .max(1);

        // Steps, with the up-front support check.
        let mut steps = Vec::with_capacity(g.node_count());
        let mut unsupported = None;
        for (id, node) in g.nodes() {
            let name = node.display_name(id);
            let op = node.op().clone();
            let domain =
                qtool_ir::ops::normalize_domain(node.domain.as_deref().unwrap_or(op.domain()))
                    .to_string();
            let opset = model.opset(&domain).unwrap_or(if domain.is_empty() {
                match model.onnx_opset() {
                    0 => DEFAULT_ONNX_OPSET,
                    v => v,
                }
            } else {
                1
            });
            if unsupported.is_none() && !ops::is_supported(&op) {
                let reason = match &op {
                    Op::Opaque(o) => Some(
                        o.reason
                            .clone()
                            .unwrap_or_else(|| "the op is unknown to qtool".to_string()),
                    ),
                    _ => None,
                };
                unsupported = Some(ExecError::UnsupportedOp {
                    node: name.clone(),
                    op_type: op.op_type().to_string(),
                    domain,
                    opset,
                    reason,
                });
            }
            steps.push(Step {
                node: name,
                inputs: node.inputs().iter().map(|v| v.map(slot)).collect(),
                outputs: node.outputs().iter().map(|v| v.map(slot)).collect(),
                folded: matches!(op, Op::Constant(_)),
                op,
                opset,
                free_after: Vec::new(),
                prepared: None,
                fuse: None,
            });
        }
        if let Some(e) = unsupported {
            return Err(e);
        }

        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("qtool-exec-{i}"))
            .build()
            .map_err(|e| ExecError::Model(format!("cannot start the thread pool: {e}")))?;

        // Fold Constant nodes once.
        for s in steps.iter().filter(|s| s.folded) {
            let cx = OpCtx {
                opset: s.opset,
                n_outputs: s.outputs.len(),
                node: &s.node,
                threads,
            };
            let outs = match ops::eval(&s.op, &cx, &[]) {
                Some(r) => r.map_err(|e| op_err(s, e))?,
                None => return Err(unsupported_at_run(s)),
            };
            for (o, t) in s.outputs.iter().zip(outs) {
                if let Some(o) = o {
                    consts[*o] = Some(t);
                }
            }
        }

        // Prepared state (weights packed once): only from true constants, not from graph inputs
        // whose initializer a caller may override.
        let overridable: Vec<usize> = g.inputs.iter().map(|(v, _)| slot(*v)).collect();
        let is_const: Vec<bool> = consts
            .iter()
            .zip(&unconverted)
            .map(|(c, &u)| c.is_some() || u)
            .collect();
        // Initializers the executor may drop once every reader has prepared state standing in for
        // them: the reads still to be replaced (graph outputs and overridable inputs are never
        // dropped; folded Constant outputs are kept, the observer is shown them).
        let mut pending_reads: Vec<usize> = vec![0; n_slots];
        let mut droppable = vec![false; n_slots];
        for &v in &g.initializers {
            droppable[slot(v)] = !overridable.contains(&slot(v));
        }
        for (_, v) in &outputs_of(&g) {
            droppable[*v] = false;
        }
        for s in &steps {
            for v in s.inputs.iter().flatten() {
                pending_reads[*v] += 1;
            }
        }
        let mut activation: Vec<Option<Activation>> = vec![None; steps.len()];
        for (i, s) in steps.iter_mut().enumerate().filter(|(_, s)| !s.folded) {
            for v in s.inputs.iter().flatten() {
                convert(*v, &mut consts, &mut unconverted)?;
            }
            let ins: Vec<PrepInput<'_>> = s
                .inputs
                .iter()
                .map(|v| match v {
                    None => PrepInput::Absent,
                    Some(v) if overridable.contains(v) => PrepInput::Runtime,
                    Some(v) => consts[*v]
                        .as_ref()
                        .map_or(PrepInput::Runtime, PrepInput::Const),
                })
                .collect();
            s.prepared = pool.install(|| ops::prepare(&s.op, &ins));
            activation[i] = ops::fusable_activation(&s.op, s.opset, &ins);
            drop(ins);
            // Drop an initializer as soon as its last reader no longer needs it (keeps the peak
            // while building at about one copy of the weights plus the packed ones so far).
            let Some(p) = s.prepared.as_deref() else {
                continue;
            };
            for (k, v) in s.inputs.iter().enumerate() {
                let Some(v) = *v else { continue };
                if droppable[v] && p.replaces_input(k) {
                    pending_reads[v] -= 1;
                    if pending_reads[v] == 0 {
                        consts[v] = None;
                        tracing::trace!(value = %names[v], "constant held only in prepared form");
                    }
                }
            }
        }
        // Initializers no node reads (graph outputs, unused ones).
        for v in 0..n_slots {
            convert(v, &mut consts, &mut unconverted)?;
        }

        // Last uses: a slot is freed after the last step reading it, or right after its producer when
        // nothing reads it. Graph outputs and constants are never freed.
        let outputs = outputs_of(&g);
        let mut keep = vec![false; n_slots];
        for (_, s) in &outputs {
            keep[*s] = true;
        }
        for (i, &c) in is_const.iter().enumerate() {
            if c {
                keep[i] = true;
            }
        }
        let mut last_use: Vec<Option<usize>> = vec![None; n_slots];
        // Readers of each slot: (step, input position).
        let mut readers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n_slots];
        for (i, s) in steps.iter().enumerate() {
            for (k, v) in s.inputs.iter().enumerate() {
                let Some(v) = v else { continue };
                last_use[*v] = Some(i);
                readers[*v].push((i, k));
            }
        }
        // Producer + activation fusion: the producer's only output is no graph output and has one
        // reader, an activation reading it as its input 0; or (SiLU) exactly two readers, a Sigmoid
        // and a Mul of the output by that Sigmoid's (only read, non-output) result.
        let single_out = |s: &Step| match s.outputs[..] {
            [Some(o)] if !s.folded => Some(o),
            _ => None,
        };
        for i in 0..steps.len() {
            let s = &steps[i];
            if s.folded || !ops::can_fuse_activation(&s.op) {
                continue;
            }
            let Some(o) = single_out(s) else { continue };
            if keep[o] {
                continue;
            }
            let fuse = match readers[o][..] {
                [(j, 0)] => activation[j]
                    .filter(|_| single_out(&steps[j]).is_some())
                    .map(|act| (act, vec![j])),
                [(a, ka), (b, kb)] => {
                    let sig = |j: usize, k: usize| {
                        (k == 0 && activation[j] == Some(Activation::Sigmoid))
                            .then(|| single_out(&steps[j]))
                            .flatten()
                    };
                    let (j, k, so) = match (sig(a, ka), sig(b, kb)) {
                        (Some(so), _) => (a, b, so),
                        (None, Some(so)) => (b, a, so),
                        (None, None) => continue,
                    };
                    let mul = &steps[k];
                    let operands_ok = matches!(mul.inputs[..], [Some(x), Some(y)]
                        if (x, y) == (o, so) || (x, y) == (so, o));
                    (matches!(mul.op, Op::Mul(_))
                        && operands_ok
                        && single_out(mul).is_some()
                        && !keep[so]
                        && matches!(readers[so][..], [(r, _)] if r == k))
                    .then(|| (Activation::Silu, vec![j, k]))
                }
                _ => None,
            };
            steps[i].fuse = fuse;
        }
        for i in 0..steps.len() {
            let mut free: Vec<usize> = Vec::new();
            for v in steps[i].outputs.iter().flatten() {
                if !keep[*v] && last_use[*v].is_none() {
                    free.push(*v);
                }
            }
            steps[i].free_after = free;
        }
        for (v, lu) in last_use.iter().enumerate() {
            if let Some(i) = lu
                && !keep[v]
                && !steps[*i].free_after.contains(&v)
            {
                steps[*i].free_after.push(v);
            }
        }

        let inputs = g
            .inputs
            .iter()
            .map(|(v, info)| {
                let (dtype, shape) = match info.ty.as_ref().and_then(|t| t.as_tensor()) {
                    Some(t) => (
                        t.elem,
                        t.shape
                            .as_ref()
                            .map(|s| s.iter().map(|d| d.value.clone()).collect()),
                    ),
                    None => (None, None),
                };
                InputSpec {
                    name: g.value_name(*v).to_string(),
                    slot: slot(*v),
                    dtype,
                    shape,
                    required: g.initializer(*v).is_none(),
                    unused: last_use[slot(*v)].is_none() && !keep[slot(*v)],
                }
            })
            .collect();

        Ok(Executor {
            steps,
            consts,
            names,
            inputs,
            outputs,
            pool,
            threads,
        })
    }

    /// Names of the inputs a caller must feed (graph inputs without an initializer), in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .filter(|i| i.required)
            .map(|i| i.name.as_str())
            .collect()
    }

    /// Names of the graph outputs, in order.
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Worker threads of this executor's pool.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The values dropped right after node `node` runs (for inspection and tests); `None` if there
    /// is no such node.
    pub fn freed_after(&self, node: &str) -> Option<Vec<&str>> {
        let s = self.steps.iter().find(|s| s.node == node)?;
        Some(
            s.free_after
                .iter()
                .map(|&v| self.names[v].as_str())
                .collect(),
        )
    }

    /// The nodes whose constant weights were packed once at build time (for inspection and tests).
    pub fn prepared_nodes(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|s| s.prepared.is_some())
            .map(|s| s.node.as_str())
            .collect()
    }

    /// Names of the constants (initializers and folded Constant outputs) the executor holds as
    /// tensors. An initializer that only prepared state reads (a packed conv weight) is not held.
    pub fn held_constants(&self) -> Vec<&str> {
        self.consts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(v, _)| self.names[v].as_str())
            .collect()
    }

    /// Runs the model on named inputs; returns the graph outputs in order.
    pub fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, ExecError> {
        self.run_inner(inputs, None, &mut RunStats::default(), None)
    }

    /// Runs the model `runs` times (at least once) on the same inputs, timing every node; returns
    /// the outputs of the last run and the per-node times summed over all runs.
    pub fn run_profiled(
        &self,
        inputs: Vec<(String, Tensor)>,
        runs: usize,
    ) -> Result<(Vec<(String, Tensor)>, Profile), ExecError> {
        let runs = runs.max(1);
        let mut prof = Profile::default();
        let mut st = RunStats::default();
        for _ in 1..runs {
            let t0 = Instant::now();
            self.run_inner(inputs.clone(), None, &mut st, Some(&mut prof))?;
            prof.total += t0.elapsed();
            prof.runs += 1;
        }
        let t0 = Instant::now();
        let out = self.run_inner(inputs, None, &mut st, Some(&mut prof))?;
        prof.total += t0.elapsed();
        prof.runs += 1;
        prof.finish();
        Ok((out, prof))
    }

    /// Like [`Executor::run`], showing every value to `observer` as it is produced: the given graph
    /// inputs first, then each node's outputs in execution order (Constant nodes included;
    /// initializers are not shown).
    pub fn run_observed(
        &self,
        inputs: Vec<(String, Tensor)>,
        observer: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        self.run_inner(inputs, Some(observer), &mut RunStats::default(), None)
    }

    /// Like [`Executor::run`], also returning counters of the run.
    pub fn run_with_stats(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<(Vec<(String, Tensor)>, RunStats), ExecError> {
        let mut st = RunStats::default();
        let out = self.run_inner(inputs, None, &mut st, None)?;
        Ok((out, st))
    }

    /// Runs a model whose first input has its batch dimension fixed to 1 on tensors carrying `N`
    /// samples on axis 0: sample by sample, stacking the outputs on axis 0. Inputs whose declared
    /// first dimension is not 1 are passed whole to every run. Without a fixed batch of 1 (or with
    /// N = 1) this is [`Executor::run`].
    pub fn run_batched(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let batched = |spec: &InputSpec| {
            spec.shape.as_ref().and_then(|s| s.first()) == Some(&DimValue::Known(1))
        };
        let Some(first) = self.inputs.iter().find(|s| s.required) else {
            return self.run(inputs);
        };
        if !batched(first) {
            return self.run(inputs);
        }
        let Some((_, t0)) = inputs.iter().find(|(n, _)| *n == first.name) else {
            return self.run(inputs);
        };
        let n = t0.shape().first().copied().unwrap_or(1);
        if n == 1 || t0.rank() == 0 {
            return self.run(inputs);
        }
        let mut per_sample: Vec<Vec<(String, Tensor)>> = Vec::with_capacity(n);
        for i in 0..n {
            let mut sample = Vec::with_capacity(inputs.len());
            for (name, t) in &inputs {
                let spec = self.inputs.iter().find(|s| s.name == *name);
                let split = spec.is_some_and(batched) && t.shape().first() == Some(&n);
                sample.push((
                    name.clone(),
                    if split { take_sample(t, i)? } else { t.clone() },
                ));
            }
            per_sample.push(self.run(sample)?);
        }
        let mut out = Vec::with_capacity(self.outputs.len());
        for (k, (name, _)) in self.outputs.iter().enumerate() {
            let parts: Vec<&Tensor> = per_sample.iter().map(|o| &o[k].1).collect();
            out.push((
                name.clone(),
                stack(&parts)
                    .map_err(|e| ExecError::Model(format!("cannot stack output '{name}': {e}")))?,
            ));
        }
        Ok(out)
    }

    fn check_inputs(
        &self,
        inputs: Vec<(String, Tensor)>,
        vals: &mut [Option<Tensor>],
    ) -> Result<Vec<usize>, ExecError> {
        let mut given = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            let Some(spec) = self.inputs.iter().find(|s| s.name == name) else {
                return Err(ExecError::UnknownInput(name));
            };
            let dtype_ok = spec.dtype.is_none_or(|d| d == t.dtype());
            let shape_ok = spec.shape.as_ref().is_none_or(|dims| {
                dims.len() == t.rank()
                    && dims.iter().zip(t.shape()).all(|(d, &g)| match d {
                        DimValue::Known(v) => *v < 0 || *v == g as i64, // Paddle writes -1 for dynamic dims
                        _ => true,
                    })
            });
            if !dtype_ok || !shape_ok {
                return Err(ExecError::InputMismatch {
                    name,
                    expected_dtype: spec
                        .dtype
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "any type".to_string()),
                    expected_shape: shape_str(&spec.shape),
                    got_dtype: t.dtype(),
                    got_shape: t.shape().to_vec(),
                });
            }
            vals[spec.slot] = Some(t);
            given.push(spec.slot);
        }
        for spec in &self.inputs {
            if spec.required && vals[spec.slot].is_none() {
                return Err(ExecError::MissingInput(spec.name.clone()));
            }
        }
        Ok(given)
    }

    fn run_inner(
        &self,
        inputs: Vec<(String, Tensor)>,
        observer: Option<Observer<'_>>,
        st: &mut RunStats,
        prof: Option<&mut Profile>,
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        match observer {
            // The whole run inside the pool: each node's kernels then start their parallel work
            // from a pool thread, without a hand-over to the pool (and back) per node.
            None => self.pool.install(|| self.run_steps(inputs, None, st, prof)),
            // The observer need not be `Send`: run from the caller's thread, entering the pool per
            // node.
            Some(obs) => self.run_steps(inputs, Some(obs), st, prof),
        }
    }

    fn run_steps(
        &self,
        inputs: Vec<(String, Tensor)>,
        mut observer: Option<Observer<'_>>,
        st: &mut RunStats,
        mut prof: Option<&mut Profile>,
    ) -> Result<Vec<(String, Tensor)>, ExecError> {
        let mut vals: Vec<Option<Tensor>> = vec![None; self.names.len()];
        let given = self.check_inputs(inputs, &mut vals)?;
        let mut live = given.len();
        st.peak_live_values = live;
        for spec in &self.inputs {
            if let Some(t) = &vals[spec.slot]
                && given.contains(&spec.slot)
            {
                if let Some(obs) = observer.as_mut() {
                    obs(&spec.name, t);
                }
                if spec.unused {
                    vals[spec.slot] = None;
                    live -= 1;
                    st.values_freed += 1;
                }
            }
        }
        // Activations computed by their producer in this run (fusion only runs unobserved, so an
        // observer sees every intermediate value).
        let mut absorbed = vec![false; self.steps.len()];
        {
            for (si, s) in self.steps.iter().enumerate() {
                if absorbed[si] {
                    st.nodes_run += 1;
                    for v in &s.free_after {
                        if vals[*v].take().is_some() {
                            live -= 1;
                            st.values_freed += 1;
                        }
                    }
                    continue;
                }
                if s.folded {
                    if let Some(obs) = observer.as_mut() {
                        for o in s.outputs.iter().flatten() {
                            obs(
                                &self.names[*o],
                                self.consts[*o].as_ref().expect("folded constant"),
                            );
                        }
                    }
                    continue;
                }
                let _span =
                    tracing::debug_span!("node", name = %s.node, op = s.op.op_type()).entered();
                let args: Vec<Option<&Tensor>> = s
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(k, v)| match v {
                        None => Ok(None),
                        // A constant held only in prepared form: the op reads it from there.
                        Some(v)
                            if vals[*v].is_none()
                                && self.consts[*v].is_none()
                                && s.prepared.as_ref().is_some_and(|p| p.replaces_input(k)) =>
                        {
                            Ok(None)
                        }
                        Some(v) => vals[*v]
                            .as_ref()
                            .or(self.consts[*v].as_ref())
                            .map(Some)
                            .ok_or_else(|| {
                                ExecError::Model(format!(
                                    "node '{}' reads '{}', which has no value at this point",
                                    s.node, self.names[*v]
                                ))
                            }),
                    })
                    .collect::<Result<_, _>>()?;
                let cx = OpCtx {
                    opset: s.opset,
                    n_outputs: s.outputs.len(),
                    node: &s.node,
                    threads: self.threads,
                };
                let prepared = s.prepared.as_deref();
                let t0 = prof.is_some().then(Instant::now);
                if observer.is_none()
                    && let Some((act, ref js)) = s.fuse
                    && let Some(r) = self
                        .pool
                        .install(|| ops::eval_fused(&s.op, &args, prepared, act))
                {
                    let t = r
                        .map_err(|e| op_err(s, e))?
                        .into_iter()
                        .next()
                        .ok_or_else(|| op_err(s, OpError("produced no output".into())))?;
                    drop(args);
                    st.nodes_run += 1;
                    if let (Some(p), Some(t0)) = (prof.as_deref_mut(), t0) {
                        let mut op = s.op.op_type().to_string();
                        for &j in js {
                            op = op + "+" + self.steps[j].op.op_type();
                        }
                        p.record(si, &s.node, &op, t.shape(), t0.elapsed());
                    }
                    let last = *js.last().expect("fusion absorbs a step");
                    let o = self.steps[last].outputs[0].expect("fused activation output");
                    vals[o] = Some(t);
                    live += 1;
                    for &j in js {
                        absorbed[j] = true;
                    }
                    st.peak_live_values = st.peak_live_values.max(live);
                    for v in &s.free_after {
                        if vals[*v].take().is_some() {
                            live -= 1;
                            st.values_freed += 1;
                        }
                    }
                    continue;
                }
                let outs = match self
                    .pool
                    .install(|| ops::eval_with(&s.op, &cx, &args, prepared))
                {
                    Some(r) => r.map_err(|e| op_err(s, e))?,
                    None => return Err(unsupported_at_run(s)),
                };
                drop(args);
                st.nodes_run += 1;
                if let (Some(p), Some(t0)) = (prof.as_deref_mut(), t0) {
                    let shape = outs.first().map(|t| t.shape()).unwrap_or(&[]);
                    p.record(si, &s.node, s.op.op_type(), shape, t0.elapsed());
                }
                let got = outs.len();
                let mut outs = outs.into_iter();
                for (i, o) in s.outputs.iter().enumerate() {
                    let t = outs.next();
                    let Some(o) = o else { continue };
                    let Some(t) = t else {
                        return Err(op_err(
                            s,
                            OpError(format!("produced {got} outputs, but output {i} is used")),
                        ));
                    };
                    if let Some(obs) = observer.as_mut() {
                        obs(&self.names[*o], &t);
                    }
                    vals[*o] = Some(t);
                    live += 1;
                }
                st.peak_live_values = st.peak_live_values.max(live);
                for v in &s.free_after {
                    if vals[*v].take().is_some() {
                        live -= 1;
                        st.values_freed += 1;
                    }
                }
            }
        }
        self.outputs
            .iter()
            .map(|(name, v)| {
                let t = match vals[*v].take() {
                    Some(t) => t,
                    None => self.consts[*v].clone().ok_or_else(|| {
                        ExecError::Model(format!("graph output '{name}' was not computed"))
                    })?,
                };
                Ok((name.clone(), t))
            })
            .collect()
    }
}

/// The graph outputs: (name, slot).
fn outputs_of(g: &qtool_ir::Graph) -> Vec<(String, usize)> {
    g.outputs
        .iter()
        .map(|(v, _)| (g.value_name(*v).to_string(), slot(*v)))
        .collect()
}

fn op_err(s: &Step, e: OpError) -> ExecError {
    ExecError::Op {
        node: s.node.clone(),
        op_type: s.op.op_type().to_string(),
        msg: e.0,
    }
}

fn unsupported_at_run(s: &Step) -> ExecError {
    ExecError::UnsupportedOp {
        node: s.node.clone(),
        op_type: s.op.op_type().to_string(),
        domain: s.op.domain().to_string(),
        opset: s.opset,
        reason: Some("no kernel is registered for it".to_string()),
    }
}

/// Sample `i` of a tensor's axis 0, keeping the axis (size 1).
fn take_sample(t: &Tensor, i: usize) -> Result<Tensor, ExecError> {
    Ok(
        dispatch_tensor!(t, a => crate::util::wrap(a.slice_axis(Axis(0), Slice::from(i..i + 1)).to_owned()),
        _p => return Err(ExecError::Model(format!("cannot split a {} tensor into samples", t.dtype())))),
    )
}

/// Joins per-sample outputs on axis 0 (concatenating when each has a leading 1, else stacking).
fn stack(parts: &[&Tensor]) -> Result<Tensor, String> {
    let first = parts.first().ok_or("no samples")?;
    let concat = first.rank() >= 1 && first.shape()[0] == 1;
    fn go<T: qtool_tensor::Element>(
        _: &ndarray::ArrayD<T>,
        parts: &[&Tensor],
        concat: bool,
    ) -> Result<Tensor, String> {
        let views: Vec<_> = parts
            .iter()
            .map(|t| {
                let a = t.view::<T>().map_err(|e| e.to_string())?;
                Ok(if concat {
                    a.view()
                } else {
                    a.view().insert_axis(Axis(0))
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(crate::util::wrap(
            ndarray::concatenate(Axis(0), &views).map_err(|e| e.to_string())?,
        ))
    }
    dispatch_tensor!(*first, a => go(a, parts, concat), p => Err(format!("{} outputs cannot be stacked", p.dtype)))
}
