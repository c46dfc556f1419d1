import Dispatch

/// Folded kernels computed on a second thread while the model is being written.
///
/// Copying a model's unchanged tensors into the output is the longest step of a fold, and
/// the kernels' arithmetic and probes the next longest; one thread used to do them in turn.
/// A kernel's size follows from its layer's shape, so its bytes get their place in the
/// output at once; the writer waits for a kernel only when it reaches those bytes
/// (`waitForBytes(at:)`), and for every probe's verdict before anything is committed
/// (`finish()`).
///
/// Only for kernels nothing else reads before they are written (not with `--fuse-bn` or
/// `--reparam`, which rescale and merge kernels).
public final class PendingKernels: @unchecked Sendable {
    /// A job fills its bytes and returns its probe's relative error (nil when not probed).
    public typealias Job = () -> Double?

    private let queue = DispatchQueue(label: "doconv.pending-kernels")
    /// Per job, in the order added.
    private var jobs: [Outcome] = []
    private var jobByBytes: [UnsafeRawPointer: Int] = [:]
    private var finished = false

    /// What a job leaves: its probe error, written by the job's thread before the signal and
    /// read only after a wait for it.
    private final class Outcome: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var relativeError: Double?
        var waited = false
    }

    public init() {}

    deinit {
        // The jobs write into bytes the model owns: none may run past this point.
        queue.sync {}
    }

    /// Starts `job`, which fills `bytes`, after the jobs added before it.
    /// What the job reads and writes must stay valid until it has run: the job should hold
    /// what owns `bytes` (`addFold` keeps its `owner`); this object itself waits for its jobs
    /// before it goes.
    public func add(filling bytes: UnsafeMutableRawBufferPointer, _ job: @escaping Job) {
        precondition(!finished, "a job added after finish()")
        let outcome = Outcome()
        jobs.append(outcome)
        if let start = bytes.baseAddress { jobByBytes[UnsafeRawPointer(start)] = jobs.count - 1 }
        let box = UncheckedJob(run: job)
        queue.async {
            outcome.relativeError = box.run()
            outcome.done.signal()
        }
    }

    /// Waits until the job that fills the bytes starting at `start`, if any, is done.
    public func waitForBytes(at start: UnsafeRawPointer?) {
        guard let start, let number = jobByBytes[start], !jobs[number].waited else { return }
        jobs[number].done.wait()
        jobs[number].waited = true
    }

    /// Waits for every job; returns each one's probe error, in the order they were added.
    public func finish() -> [Double?] {
        queue.sync {}
        finished = true
        return jobs.map(\.relativeError)
    }

    /// `summary` with the probe errors in (waiting for them): `deferredLayers` are the
    /// indices in `summary.layers` of the layers the jobs fold, in the order they were added.
    public func completing(_ summary: FoldSummary, deferredLayers: [Int]) -> FoldSummary {
        var complete = summary
        for (layer, error) in zip(deferredLayers, finish()) { complete.layers[layer].relativeError = error }
        return complete
    }
}

/// A job handed to the queue's thread: the fold guarantees what it captures outlives it (see
/// `PendingKernels.add`).
private struct UncheckedJob: @unchecked Sendable {
    let run: PendingKernels.Job
}

extension PendingKernels {
    /// Adds the fold of `layer`'s float32 kernel into `raw` (its `kernelCount` floats, from
    /// `KernelMemory.allocate`) and, with `verify`, the probe of the kernel as stored;
    /// `then` runs last (to let D's and W's pages go). `owner` (what `layer`'s and `raw`'s
    /// memory belongs to) is kept until the job has run.
    public func addFold(of layer: DOConvLayer, into raw: UnsafeMutableRawBufferPointer, verify: Bool, patches: Int, seed: UInt64,
                        keeping owner: AnyObject?, then done: @escaping () -> Void = {}) {
        precondition(raw.count == layer.geometry.kernelCount * MemoryLayout<Float>.stride, "kernel bytes do not match the layer")
        // The writer's thread is busy copying meanwhile: one fewer here.
        let threads = max(1, ParallelWork.defaultThreads - 1)
        add(filling: raw) {
            withExtendedLifetime(owner) {
                defer { done() }
                KernelMemory.populate(raw)
                let kernel = raw.bindMemory(to: Float.self)
                layer.fold(into: kernel, maxThreads: threads)
                guard verify else { return nil }
                return LayerProbe.compare(layer: layer, kernel: UnsafeBufferPointer(kernel), patches: patches, seed: seed,
                                          maxThreads: threads).relativeError
            }
        }
    }
}
