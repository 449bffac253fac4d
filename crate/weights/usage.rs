//! [`UsageTracker`]: which tensors a model asked for, so that a load fails on a checkpoint that
//! holds tensors the model did not use (a wrong config or a different model), naming them.

use std::cell::RefCell;
use std::collections::BTreeSet;

use super::{companion, scb_companion, DType, RawTensor, TensorSource, WeightsError};

/// A [`TensorSource`] wrapper recording every name asked for with [`TensorSource::f32`] or
/// [`TensorSource::raw`] (the `scales` / `biases` companions of an MLX-quantized weight and the
/// `weight_scb` of a PyTorch int8 one count with it); [`TensorSource::info`] peeks without counting.
pub struct UsageTracker<'a> {
    inner: &'a dyn TensorSource,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> UsageTracker<'a> {
    pub fn new(inner: &'a dyn TensorSource) -> Self {
        Self {
            inner,
            used: RefCell::default(),
        }
    }

    fn mark(&self, name: &str) {
        let mut u = self.used.borrow_mut();
        u.insert(name.to_string());
        match self.inner.info(name).map(|(d, _)| d) {
            Some(DType::U32) => {
                u.insert(companion(name, "scales"));
                u.insert(companion(name, "biases"));
            }
            Some(DType::I8) => {
                u.insert(scb_companion(name));
            }
            _ => {}
        }
    }

    /// Names asked for so far.
    pub fn used(&self) -> Vec<String> {
        self.used.borrow().iter().cloned().collect()
    }

    /// Names the source holds that were never asked for.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.inner
            .names()
            .into_iter()
            .filter(|n| !used.contains(n))
            .collect()
    }

    /// `Err(WeightsError::Unused)` listing the tensors never asked for (with their stored names
    /// where they differ), or `Ok`.
    pub fn finish(&self) -> Result<(), WeightsError> {
        let unused = self.unused();
        if unused.is_empty() {
            return Ok(());
        }
        let tensors: Vec<String> = unused
            .iter()
            .map(|n| match self.inner.stored_name(n) {
                Some(s) => format!("{n} (stored as {s})"),
                None => n.clone(),
            })
            .collect();
        Err(WeightsError::Unused {
            file: self.inner.file(),
            count: tensors.len(),
            tensors,
        })
    }
}

impl TensorSource for UsageTracker<'_> {
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        self.mark(name);
        self.inner.f32(name, shape)
    }

    fn raw(&self, name: &str) -> Result<RawTensor, WeightsError> {
        self.mark(name);
        self.inner.raw(name)
    }

    fn info(&self, name: &str) -> Option<(DType, Vec<usize>)> {
        self.inner.info(name)
    }

    fn names(&self) -> Vec<String> {
        self.inner.names()
    }

    fn file(&self) -> String {
        self.inner.file()
    }

    fn is_generator(&self) -> bool {
        self.inner.is_generator()
    }

    fn stored_name(&self, name: &str) -> Option<String> {
        self.inner.stored_name(name)
    }
}
