// torch_shim.cpp: the C API of torch_shim.h over ATen, the one place pith calls libtorch (kernels/ holds the
// CUDA kernels the fused ops launch, and their CPU references).
// Every entry point catches everything; errors become the thread's pending message.
#include "torch_shim.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include "fused_ops.h"
#ifdef PITH_FUSED_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include <atomic>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#define PT_TORCH_AT_LEAST(maj, min) \
  (TORCH_VERSION_MAJOR > (maj) || (TORCH_VERSION_MAJOR == (maj) && TORCH_VERSION_MINOR >= (min)))

static const size_t KEPT = (size_t)-1;

struct pt_tensor {
  at::Tensor t;
  size_t slot;  // index in the thread's arena, or KEPT
};

struct pt_gen {
  at::Generator g;
};

// ---------------------------------------------------------------- errors

static thread_local std::string g_error;
// The arena's size when the pending error was raised: an error raised inside scope s has a mark
// above s (pt_scope_begin puts a sentinel at s), so pt_scope_end(s) knows the error is its own.
static thread_local size_t g_error_mark = 0;
static size_t arena_size(void);

static void set_error(const std::string &msg) {
  if (!g_error.empty()) return;
  g_error = msg;
  g_error_mark = arena_size();
}

extern "C" int pt_ok(void) { return g_error.empty(); }
extern "C" const char *pt_error(void) { return g_error.c_str(); }
extern "C" void pt_error_clear(void) { g_error.clear(); }

extern "C" int pt_fail(pith_err *err, const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  int rc = pith_fail(err, "%s: %s", what, g_error.empty() ? "failed" : g_error.c_str());
  g_error.clear();
  return rc;
}

// libtorch messages can run to many lines; the first says what went wrong.
static std::string first_line(const char *what) {
  std::string s(what ? what : "unknown error");
  size_t nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

// A fallback that changes how the work is done (never what it computes) is said once per run.
static void log_fallback_once(std::atomic<bool> &said, const char *what, const std::exception &e) {
  if (!said.exchange(true))
    fprintf(stderr, "pith: note: %s (said once): %s\n", what, first_line(e.what()).c_str());
}

extern "C" void pt_error_set(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  set_error(buf);
}

static std::string shape_str(const at::Tensor &t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); i++) {
    if (i) s += ",";
    s += std::to_string(t.size(i));
  }
  return s + "]";
}


// ---------------------------------------------------------------- lifetimes

static thread_local size_t g_live = 0;

// The thread's handles not taken out with pt_keep. Whatever no scope freed goes with the thread.
struct arena : std::vector<pt_tensor *> {
  ~arena() {
    for (pt_tensor *h : *this) delete h;
  }
};
static thread_local arena g_arena;
static size_t arena_size(void) { return g_arena.size(); }

static pt_tensor *wrap(at::Tensor t) {
  pt_tensor *h = new pt_tensor{std::move(t), g_arena.size()};
  g_arena.push_back(h);
  g_live++;
  return h;
}

static void destroy(pt_tensor *h) {
  delete h;
  g_live--;
}

// A scope is the index of a sentinel slot (NULL) pushed at its beginning: every handle and every
// error of the scope comes after it.
extern "C" pt_scope pt_scope_begin(void) {
  g_arena.push_back(nullptr);
  return g_arena.size() - 1;
}

extern "C" void pt_scope_end(pt_scope s) {
  while (g_arena.size() > s) {
    pt_tensor *h = g_arena.back();
    g_arena.pop_back();
    if (h) destroy(h);
  }
  // An error raised in this scope and still pending was never reported (pt_fail consumes it): it
  // must not fail a later, unrelated call, so it ends here, said on stderr as the bug it is.
  if (!g_error.empty() && g_error_mark > s) {
    fprintf(stderr, "pith: warning: a libtorch error was never reported and is dropped at the end of its scope: %s\n",
            g_error.c_str());
    g_error.clear();
  }
}

extern "C" void pt_scope_return_n(pt_scope s, pt_tensor **keep, int n) {
  std::vector<pt_tensor *> moved;
  for (int i = 0; i < n; i++) {
    pt_tensor *t = keep[i];
    if (t && t->slot != KEPT && t->slot >= s && g_arena[t->slot] == t) {
      g_arena[t->slot] = nullptr;
      moved.push_back(t);
    }
  }
  // The scope's error, if any, belongs to what it returns: it moves out with the handles.
  bool pending = !g_error.empty() && g_error_mark > s;
  g_error_mark = 0;
  pt_scope_end(s);
  if (pending) g_error_mark = s;
  for (pt_tensor *t : moved) {
    t->slot = g_arena.size();
    g_arena.push_back(t);
  }
}

extern "C" pt_tensor *pt_scope_return(pt_scope s, pt_tensor *keep) {
  pt_scope_return_n(s, &keep, 1);
  return keep;
}

extern "C" pt_tensor *pt_keep(pt_tensor *t) {
  if (t && t->slot != KEPT) {
    g_arena[t->slot] = nullptr;
    t->slot = KEPT;
  }
  return t;
}

extern "C" void pt_free(pt_tensor *t) {
  if (!t) return;
  if (t->slot != KEPT && t->slot < g_arena.size() && g_arena[t->slot] == t) g_arena[t->slot] = nullptr;
  destroy(t);
}

extern "C" size_t pt_live_handles(void) { return g_live; }

// ---------------------------------------------------------------- the guard around every op

static std::string failure_reason(const std::exception &e) {
  const c10::Error *ce = dynamic_cast<const c10::Error *>(&e);
  return first_line(ce ? ce->what_without_backtrace() : e.what());
}

// Runs f (which returns an at::Tensor); converts any exception into the pending error
// "op: SHAPES: reason", where shapes() names the inputs (only computed on failure).
template <class F, class S>
static pt_tensor *guard(const char *op, F &&f, S &&shapes) {
  try {
    return wrap(f());
  } catch (const std::exception &e) {
    std::string s = shapes();
    set_error(std::string(op) + ": " + (s.empty() ? "" : s + ": ") + failure_reason(e));
  } catch (...) {
    set_error(std::string(op) + ": unknown C++ exception");
  }
  return nullptr;
}

// guard() for ops on handles: a NULL input (an earlier failure) gives NULL at once.
template <class F>
static pt_tensor *run_op(const char *op, std::initializer_list<const pt_tensor *> ins, F &&f,
                         const char *sep = ", ") {
  for (const pt_tensor *in : ins)
    if (!in) {
      set_error(std::string(op) + ": an input is NULL (an earlier op failed)");
      return nullptr;
    }
  return guard(op, f, [&] {
    std::string s;
    for (const pt_tensor *in : ins) s += (s.empty() ? "" : sep) + shape_str(in->t);
    return s;
  });
}

// Same for entry points that return a status (0 ok, -1 error).
template <class F>
static int run_status(const char *op, F &&f) {
  try {
    f();
    return 0;
  } catch (const std::exception &e) {
    set_error(std::string(op) + ": " + failure_reason(e));
  } catch (...) {
    set_error(std::string(op) + ": unknown C++ exception");
  }
  return -1;
}

// ---------------------------------------------------------------- dtypes, devices, shapes

static at::ScalarType to_scalar_type(pt_dtype dt) {
  switch (dt) {
    case PT_F32: return at::kFloat;
    case PT_BF16: return at::kBFloat16;
    case PT_F16: return at::kHalf;
    case PT_I32: return at::kInt;
    case PT_I64: return at::kLong;
    case PT_BOOL: return at::kBool;
  }
  throw std::invalid_argument("unknown pt_dtype " + std::to_string((int)dt));
}

static pt_dtype from_scalar_type(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return PT_F32;
    case at::kBFloat16: return PT_BF16;
    case at::kHalf: return PT_F16;
    case at::kInt: return PT_I32;
    case at::kLong: return PT_I64;
    case at::kBool: return PT_BOOL;
    default: throw std::invalid_argument(std::string("dtype ") + c10::toString(st) + " has no pt_dtype");
  }
}

static at::Device to_device(pt_device dev) {
  if (dev == PT_CPU) return at::Device(at::kCPU);
  if (dev < 0) throw std::invalid_argument("bad device " + std::to_string(dev));
  return at::Device(at::kCUDA, (c10::DeviceIndex)dev);
}

static at::TensorOptions options(pt_dtype dt, pt_device dev) {
  return at::TensorOptions().dtype(to_scalar_type(dt)).device(to_device(dev));
}

static std::vector<int64_t> dims(pt_shape s) {
  if (s.ndim < 0 || s.ndim > PT_MAX_DIMS)
    throw std::invalid_argument("shape has " + std::to_string(s.ndim) + " dims (at most " +
                                std::to_string(PT_MAX_DIMS) + ")");
  return std::vector<int64_t>(s.d, s.d + s.ndim);
}

static std::optional<at::Generator> gen_of(pt_gen *g) {
  if (!g) return std::nullopt;
  return g->g;
}

extern "C" const char *pt_dtype_name(pt_dtype dt) {
  switch (dt) {
    case PT_F32: return "f32";
    case PT_BF16: return "bf16";
    case PT_F16: return "f16";
    case PT_I32: return "i32";
    case PT_I64: return "i64";
    case PT_BOOL: return "bool";
  }
  return "?";
}

extern "C" size_t pt_dtype_size(pt_dtype dt) {
  switch (dt) {
    case PT_F32: case PT_I32: return 4;
    case PT_BF16: case PT_F16: return 2;
    case PT_I64: return 8;
    case PT_BOOL: return 1;
  }
  return 0;
}

// ---------------------------------------------------------------- runtime

extern "C" const char *pt_version(void) { return TORCH_VERSION; }

extern "C" int pt_cuda_device_count(void) {
  try {
    return at::hasCUDA() ? (int)at::getNumGPUs() : 0;
  } catch (...) {
    return 0;
  }
}

extern "C" int pt_device_parse(const char *name, pt_device *dev, pith_err *err) {
  if (!strcmp(name, "cpu")) {
    *dev = PT_CPU;
    return 0;
  }
  const char *n = !strcmp(name, "cuda") ? "0" : !strncmp(name, "cuda:", 5) ? name + 5 : "";
  if (!*n || strspn(n, "0123456789") != strlen(n) || strlen(n) > 4) {
    pith_fail(err, "is cpu, cuda or cuda:N, not '%s'", name);
    return -1;
  }
  *dev = atoi(n);
  if (*dev >= pt_cuda_device_count()) {
    pith_fail(err, "%s asked for, but %d CUDA device(s) are visible", name, pt_cuda_device_count());
    return -2;
  }
  return 0;
}

extern "C" int pt_cuda_peak_bytes(pt_device dev, int64_t *allocated, int64_t *reserved) {
  *allocated = *reserved = -1;
  if (dev == PT_CPU || dev >= pt_cuda_device_count()) return -1;
  return run_status("cuda_peak_bytes", [&] {
    // The AGGREGATE entry sums the small and large pools.
    const size_t all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    auto stats = at::accelerator::getDeviceStats((c10::DeviceIndex)dev);
    *allocated = stats.allocated_bytes[all].peak;
    *reserved = stats.reserved_bytes[all].peak;
  });
}

extern "C" void pt_cuda_reset_peak(pt_device dev) {
  if (dev == PT_CPU || dev >= pt_cuda_device_count()) return;
  run_status("cuda_reset_peak", [&] { at::accelerator::resetPeakStats((c10::DeviceIndex)dev); });
}

extern "C" void pt_set_num_threads(int n) {
  if (n > 0) at::set_num_threads(n);
}

extern "C" int pt_num_threads(void) { return at::get_num_threads(); }

extern "C" void pt_manual_seed(uint64_t seed) {
  run_status("manual_seed", [&] {
    // A Generator is a shared handle: seeding the copy seeds the default one.
    auto seed_one = [&](at::Device dev) {
      at::Generator gen = at::globalContext().defaultGenerator(dev);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(seed);
    };
    seed_one(at::Device(at::kCPU));
    for (int i = 0; i < pt_cuda_device_count(); i++) seed_one(at::Device(at::kCUDA, (c10::DeviceIndex)i));
  });
}

// ---------------------------------------------------------------- describing

// "f32" for the dtypes pith names, libtorch's name for the others.
static std::string dtype_str(at::ScalarType st) {
  try {
    return pt_dtype_name(from_scalar_type(st));
  } catch (...) {
    return c10::toString(st);
  }
}

extern "C" pt_shape pt_shape_of(const pt_tensor *t) {
  pt_shape s = {-1, {0}};
  if (!t || t->t.dim() > PT_MAX_DIMS) return s;
  s.ndim = (int)t->t.dim();
  for (int i = 0; i < s.ndim; i++) s.d[i] = t->t.size(i);
  return s;
}

extern "C" int pt_ndim(const pt_tensor *t) { return t ? (int)t->t.dim() : -1; }

extern "C" int64_t pt_size(const pt_tensor *t, int dim) {
  if (!t) return -1;
  int64_t n = t->t.dim();
  if (dim < 0) dim += (int)n;
  return (dim >= 0 && dim < n) ? t->t.size(dim) : -1;
}

extern "C" int64_t pt_numel(const pt_tensor *t) { return t ? t->t.numel() : -1; }

extern "C" pt_dtype pt_dtype_of(const pt_tensor *t) {
  try {
    return t ? from_scalar_type(t->t.scalar_type()) : PT_F32;
  } catch (...) {
    return PT_F32;
  }
}

extern "C" pt_device pt_device_of(const pt_tensor *t) {
  if (!t || t->t.device().is_cpu()) return PT_CPU;
  return t->t.device().index();
}

extern "C" char *pt_describe(const pt_tensor *t, char *buf, size_t len) {
  if (!t) {
    snprintf(buf, len, "(null)");
    return buf;
  }
  std::string dev = t->t.device().is_cpu() ? "cpu" : "cuda:" + std::to_string(t->t.device().index());
  snprintf(buf, len, "%s %s %s", shape_str(t->t).c_str(), dtype_str(t->t.scalar_type()).c_str(), dev.c_str());
  return buf;
}

extern "C" int64_t pt_storage_nbytes(const pt_tensor *t) {
  if (!t || !t->t.defined() || !t->t.has_storage()) return -1;
  return (int64_t)t->t.storage().nbytes();
}

// ---------------------------------------------------------------- creating and reading

extern "C" pt_tensor *pt_from_data(const void *data, pt_dtype dt, pt_shape shape, pt_device dev) {
  return run_op("from_data", {}, [&] {
    if (!data) throw std::invalid_argument("data is NULL");
    at::Tensor cpu = at::empty(dims(shape), options(dt, PT_CPU));
    if (cpu.numel() > 0) memcpy(cpu.data_ptr(), data, cpu.numel() * cpu.element_size());  // empty: no storage
    return dev == PT_CPU ? cpu : cpu.to(to_device(dev));
  });
}

extern "C" int pt_to_data(const pt_tensor *t, void *out, size_t nbytes) {
  if (!t) {
    set_error("to_data: the input is NULL (an earlier op failed)");
    return -1;
  }
  return run_status("to_data", [&] {
    at::Tensor c = t->t.detach().to(at::kCPU).contiguous();
    size_t need = (size_t)c.numel() * c.element_size();
    if (need != nbytes)
      throw std::invalid_argument(shape_str(c) + " " + dtype_str(c.scalar_type()) + " holds " +
                                  std::to_string(need) + " bytes, the buffer " + std::to_string(nbytes));
    if (need > 0) memcpy(out, c.data_ptr(), need);
  });
}

extern "C" double pt_item(const pt_tensor *t) {
  if (!t) {
    set_error("item: the input is NULL (an earlier op failed)");
    return NAN;
  }
  double v = NAN;
  run_status("item", [&] {
    if (t->t.numel() != 1) throw std::invalid_argument(shape_str(t->t) + " has " + std::to_string(t->t.numel()) + " elements, not 1");
    v = t->t.item<double>();
  });
  return v;
}

extern "C" pt_tensor *pt_zeros(pt_shape s, pt_dtype dt, pt_device dev) {
  return run_op("zeros", {}, [&] { return at::zeros(dims(s), options(dt, dev)); });
}
extern "C" pt_tensor *pt_ones(pt_shape s, pt_dtype dt, pt_device dev) {
  return run_op("ones", {}, [&] { return at::ones(dims(s), options(dt, dev)); });
}
extern "C" pt_tensor *pt_full(pt_shape s, double value, pt_dtype dt, pt_device dev) {
  return run_op("full", {}, [&] { return at::full(dims(s), value, options(dt, dev)); });
}
extern "C" pt_tensor *pt_arange(int64_t start, int64_t end, pt_dtype dt, pt_device dev) {
  return run_op("arange", {}, [&] { return at::arange(start, end, options(dt, dev)); });
}
extern "C" pt_tensor *pt_randn(pt_shape s, pt_dtype dt, pt_device dev, pt_gen *g) {
  return run_op("randn", {}, [&] { return at::randn(dims(s), gen_of(g), options(dt, dev)); });
}
extern "C" pt_tensor *pt_uniform(pt_shape s, double lo, double hi, pt_dtype dt, pt_device dev, pt_gen *g) {
  return run_op("uniform", {}, [&] { return at::empty(dims(s), options(dt, dev)).uniform_(lo, hi, gen_of(g)); });
}
extern "C" pt_tensor *pt_to_dtype(const pt_tensor *t, pt_dtype dt) {
  return run_op("to_dtype", {t}, [&] { return t->t.to(to_scalar_type(dt)); });
}
extern "C" pt_tensor *pt_to_device(const pt_tensor *t, pt_device dev) {
  return run_op("to_device", {t}, [&] { return t->t.to(to_device(dev)); });
}
extern "C" pt_tensor *pt_clone(const pt_tensor *t) {
  return run_op("clone", {t}, [&] { return t->t.clone(); });
}
extern "C" pt_tensor *pt_detach(const pt_tensor *t) {
  return run_op("detach", {t}, [&] { return t->t.detach(); });
}

// ---------------------------------------------------------------- elementwise

#define PT_BINARY(name, expr)                                                  \
  extern "C" pt_tensor *pt_##name(const pt_tensor *a, const pt_tensor *b) {    \
    return run_op(#name, {a, b}, [&] { return expr; });                        \
  }
PT_BINARY(add, a->t + b->t)
PT_BINARY(sub, a->t - b->t)
PT_BINARY(mul, a->t * b->t)
PT_BINARY(div, a->t / b->t)
PT_BINARY(maximum, at::maximum(a->t, b->t))
PT_BINARY(eq, at::eq(a->t, b->t))

#define PT_WITH_SCALAR(name, expr)                                       \
  extern "C" pt_tensor *pt_##name(const pt_tensor *a, double s) {        \
    return run_op(#name, {a}, [&] { return expr; });                     \
  }
PT_WITH_SCALAR(add_scalar, a->t + s)
PT_WITH_SCALAR(mul_scalar, a->t * s)
PT_WITH_SCALAR(pow_scalar, at::pow(a->t, s))
PT_WITH_SCALAR(eq_scalar, at::eq(a->t, s))

#define PT_UNARY(name, fn)                                  \
  extern "C" pt_tensor *pt_##name(const pt_tensor *a) {     \
    return run_op(#name, {a}, [&] { return fn(a->t); });    \
  }
PT_UNARY(neg, at::neg)
PT_UNARY(exp, at::exp)
PT_UNARY(log, at::log)
PT_UNARY(sqrt, at::sqrt)
PT_UNARY(rsqrt, at::rsqrt)
PT_UNARY(abs, at::abs)
PT_UNARY(sin, at::sin)
PT_UNARY(cos, at::cos)
PT_UNARY(tanh, at::tanh)
PT_UNARY(sigmoid, at::sigmoid)
PT_UNARY(relu, at::relu)
PT_UNARY(silu, at::silu)
PT_UNARY(contiguous, [](const at::Tensor &x) { return x.contiguous(); })
PT_UNARY(gelu, [](const at::Tensor &x) { return at::gelu(x); })
PT_UNARY(gelu_tanh, [](const at::Tensor &x) { return at::gelu(x, "tanh"); })

extern "C" pt_tensor *pt_where(const pt_tensor *cond, const pt_tensor *a, const pt_tensor *b) {
  return run_op("where", {cond, a, b}, [&] { return at::where(cond->t, a->t, b->t); });
}

extern "C" pt_tensor *pt_masked_fill(const pt_tensor *a, const pt_tensor *mask, double value) {
  return run_op("masked_fill", {a, mask}, [&] { return a->t.masked_fill(mask->t, value); });
}

// ---------------------------------------------------------------- linear algebra

extern "C" pt_tensor *pt_matmul(const pt_tensor *a, const pt_tensor *b) {
  return run_op("matmul", {a, b}, [&] {
    const at::Tensor &x = a->t, &y = b->t;
    if (x.dim() >= 1 && y.dim() >= 1) {
      int64_t inner_x = x.size(-1), inner_y = y.dim() == 1 ? y.size(0) : y.size(-2);
      if (inner_x != inner_y) throw std::invalid_argument("inner dimensions differ");
    }
    return at::matmul(x, y);
  }, " x ");
}

extern "C" pt_tensor *pt_linear(const pt_tensor *x, const pt_tensor *w, const pt_tensor *b) {
  if (!b)
    return run_op("linear", {x, w}, [&] {
      if (w->t.dim() == 2 && x->t.dim() >= 1 && x->t.size(-1) != w->t.size(1))
        throw std::invalid_argument("input features differ from the weight's (out, in)");
      return at::linear(x->t, w->t);
    }, " x ");
  return run_op("linear", {x, w, b}, [&] {
    if (w->t.dim() == 2 && x->t.dim() >= 1 && x->t.size(-1) != w->t.size(1))
      throw std::invalid_argument("input features differ from the weight's (out, in)");
    return at::linear(x->t, w->t, b->t);
  }, " x ");
}

// ---------------------------------------------------------------- reductions

extern "C" pt_tensor *pt_sum(const pt_tensor *a) {
  return run_op("sum", {a}, [&] { return a->t.sum(); });
}
extern "C" pt_tensor *pt_mean(const pt_tensor *a) {
  return run_op("mean", {a}, [&] { return a->t.mean(); });
}
extern "C" pt_tensor *pt_sum_dim(const pt_tensor *a, int dim, int keepdim) {
  return run_op("sum_dim", {a}, [&] { return a->t.sum(dim, keepdim != 0); });
}
extern "C" pt_tensor *pt_mean_dim(const pt_tensor *a, int dim, int keepdim) {
  return run_op("mean_dim", {a}, [&] { return a->t.mean(dim, keepdim != 0); });
}
extern "C" pt_tensor *pt_amax_dim(const pt_tensor *a, int dim, int keepdim) {
  return run_op("amax_dim", {a}, [&] { return at::amax(a->t, {dim}, keepdim != 0); });
}
extern "C" pt_tensor *pt_argmax(const pt_tensor *a, int dim, int keepdim) {
  return run_op("argmax", {a}, [&] { return at::argmax(a->t, dim, keepdim != 0); });
}
extern "C" pt_tensor *pt_softmax(const pt_tensor *a, int dim) {
  return run_op("softmax", {a}, [&] { return at::softmax(a->t, dim); });
}
extern "C" pt_tensor *pt_log_softmax(const pt_tensor *a, int dim) {
  return run_op("log_softmax", {a}, [&] { return at::log_softmax(a->t, dim); });
}

extern "C" pt_tensor *pt_cross_entropy(const pt_tensor *logits, const pt_tensor *targets,
                                       int64_t ignore_index, pt_reduction reduction) {
  return run_op("cross_entropy", {logits, targets}, [&] {
    if (targets->t.scalar_type() != at::kLong)
      throw std::invalid_argument("targets must be i64, not " + dtype_str(targets->t.scalar_type()));
    int64_t r = reduction == PT_REDUCE_SUM ? at::Reduction::Sum
              : reduction == PT_REDUCE_NONE ? at::Reduction::None : at::Reduction::Mean;
    return at::cross_entropy_loss(logits->t, targets->t, {}, r, ignore_index);
  });
}

// ---------------------------------------------------------------- indexing

extern "C" pt_tensor *pt_embedding(const pt_tensor *weight, const pt_tensor *ids) {
  return run_op("embedding", {weight, ids}, [&] { return at::embedding(weight->t, ids->t); });
}
extern "C" pt_tensor *pt_embedding_padded(const pt_tensor *weight, const pt_tensor *ids, int64_t padding_idx) {
  return run_op("embedding_padded", {weight, ids}, [&] {
    if (padding_idx >= weight->t.size(0))
      throw std::invalid_argument("padding_idx " + std::to_string(padding_idx) + " is outside the table");
    return at::embedding(weight->t, ids->t, padding_idx < 0 ? -1 : padding_idx);
  });
}
extern "C" pt_tensor *pt_cumsum(const pt_tensor *a, int dim) {
  return run_op("cumsum", {a}, [&] { return at::cumsum(a->t, dim); });
}
extern "C" pt_tensor *pt_index_select(const pt_tensor *a, int dim, const pt_tensor *index) {
  return run_op("index_select", {a, index}, [&] { return at::index_select(a->t, dim, index->t); });
}
extern "C" pt_tensor *pt_gather(const pt_tensor *a, int dim, const pt_tensor *index) {
  return run_op("gather", {a, index}, [&] { return at::gather(a->t, dim, index->t); });
}
extern "C" pt_tensor *pt_scatter(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src) {
  return run_op("scatter", {a, index, src}, [&] { return at::scatter(a->t, dim, index->t, src->t); });
}
extern "C" pt_tensor *pt_topk(const pt_tensor *a, int64_t k, int dim, int largest) {
  return run_op("topk", {a}, [&] { return std::get<1>(at::topk(a->t, k, dim, largest != 0, true)); });
}
extern "C" pt_tensor *pt_avg_pool1d(const pt_tensor *x, int64_t kernel, int64_t padding) {
  return run_op("avg_pool1d", {x}, [&] { return at::avg_pool1d(x->t, {kernel}, {1}, {padding}, false, true); });
}
extern "C" pt_tensor *pt_scatter_add(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src) {
  return run_op("scatter_add", {a, index, src}, [&] { return at::scatter_add(a->t, dim, index->t, src->t); });
}

extern "C" pt_tensor *pt_index_add(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src) {
  return run_op("index_add", {a, index, src}, [&] { return at::index_add(a->t, dim, index->t, src->t); });
}
extern "C" pt_tensor *pt_scatter_reduce(const pt_tensor *a, int dim, const pt_tensor *index, const pt_tensor *src,
                                        const char *reduce, int include_self) {
  return run_op("scatter_reduce", {a, index, src}, [&] {
    if (!reduce) throw std::invalid_argument("no reduction named");
    return at::scatter_reduce(a->t, dim, index->t, src->t, reduce, include_self != 0);
  });
}

// ---------------------------------------------------------------- shape

extern "C" pt_tensor *pt_cat(pt_tensor *const *ts, int n, int dim) {
  if (!ts || n <= 0) {
    set_error("cat: no tensors given");
    return nullptr;
  }
  std::vector<at::Tensor> parts;
  for (int i = 0; i < n; i++) {
    if (!ts[i]) {
      set_error("cat: input " + std::to_string(i) + " is NULL (an earlier op failed)");
      return nullptr;
    }
    parts.push_back(ts[i]->t);
  }
  return guard("cat", [&] { return at::cat(parts, dim); }, [&] {
    std::string s;
    for (const at::Tensor &t : parts) s += (s.empty() ? "" : ", ") + shape_str(t);
    return s;
  });
}

extern "C" pt_tensor *pt_slice(const pt_tensor *a, int dim, int64_t start, int64_t end) {
  return run_op("slice", {a}, [&] {
    int64_t n = a->t.dim();
    int d = dim < 0 ? dim + (int)n : dim;
    if (d < 0 || d >= n) throw std::invalid_argument("dim " + std::to_string(dim) + " out of range");
    int64_t size = a->t.size(d);
    if (start < 0 || end > size || start > end)
      throw std::invalid_argument("[" + std::to_string(start) + "," + std::to_string(end) +
                                  ") is outside dim " + std::to_string(dim) + " of size " + std::to_string(size));
    return a->t.slice(d, start, end);
  });
}

extern "C" pt_tensor *pt_view(const pt_tensor *a, pt_shape s) {
  return run_op("view", {a}, [&] { return a->t.view(dims(s)); });
}
extern "C" pt_tensor *pt_reshape(const pt_tensor *a, pt_shape s) {
  return run_op("reshape", {a}, [&] { return a->t.reshape(dims(s)); });
}
extern "C" pt_tensor *pt_transpose(const pt_tensor *a, int d0, int d1) {
  return run_op("transpose", {a}, [&] { return a->t.transpose(d0, d1); });
}
extern "C" pt_tensor *pt_permute(const pt_tensor *a, pt_shape order) {
  return run_op("permute", {a}, [&] { return a->t.permute(dims(order)); });
}
extern "C" pt_tensor *pt_unsqueeze(const pt_tensor *a, int dim) {
  return run_op("unsqueeze", {a}, [&] { return a->t.unsqueeze(dim); });
}
extern "C" pt_tensor *pt_squeeze(const pt_tensor *a, int dim) {
  return run_op("squeeze", {a}, [&] { return a->t.squeeze(dim); });
}
extern "C" pt_tensor *pt_expand(const pt_tensor *a, pt_shape s) {
  return run_op("expand", {a}, [&] { return a->t.expand(dims(s)); });
}
extern "C" pt_tensor *pt_triu(const pt_tensor *a, int64_t diagonal) {
  return run_op("triu", {a}, [&] { return at::triu(a->t, diagonal); });
}
extern "C" pt_tensor *pt_tril(const pt_tensor *a, int64_t diagonal) {
  return run_op("tril", {a}, [&] { return at::tril(a->t, diagonal); });
}

// ---------------------------------------------------------------- neural network

static void check_attention_shapes(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    throw std::invalid_argument("q, k, v must be (B, H, T, head_dim)");
  if (k.sizes() != v.sizes()) throw std::invalid_argument("k and v differ in shape");
  if (q.size(0) != k.size(0) || q.size(3) != k.size(3))
    throw std::invalid_argument("q and k differ in batch or head_dim");
  if (k.size(1) == 0 || q.size(1) % k.size(1) != 0)
    throw std::invalid_argument("query heads are not a multiple of key/value heads");
}

// The mask the math path and the fused path share: bool (true = attend) or float (added), with
// the causal constraint aligned to the end of the keys (a prefix of Tk - Tq keys is seen by all).
static std::optional<at::Tensor> attention_mask(const at::Tensor &q, const at::Tensor &k,
                                                const pt_tensor *mask, bool causal) {
  std::optional<at::Tensor> m;
  if (mask) m = mask->t;
  if (causal) {
    int64_t tq = q.size(2), tk = k.size(2);
    at::Tensor c = at::ones({tq, tk}, q.options().dtype(at::kBool)).tril(tk - tq);
    if (!m) m = c;
    else if (m->scalar_type() == at::kBool) m = at::logical_and(*m, c);
    else m = m->masked_fill(c.logical_not(), -std::numeric_limits<double>::infinity());
  }
  return m;
}

static at::Tensor repeat_kv(const at::Tensor &x, int64_t groups) {
  return groups == 1 ? x : x.repeat_interleave(groups, 1);
}

static at::Tensor attention_math(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                                 const std::optional<at::Tensor> &mask, double scale) {
  int64_t groups = q.size(1) / k.size(1);
  double s = scale > 0 ? scale : 1.0 / std::sqrt((double)q.size(3));
  at::Tensor scores = at::matmul(q, repeat_kv(k, groups).transpose(-2, -1)) * s;
  if (mask) {
    if (mask->scalar_type() == at::kBool) scores = scores.masked_fill(mask->logical_not(), -std::numeric_limits<double>::infinity());
    else scores = scores + *mask;
  }
  return at::matmul(at::softmax(scores, -1), repeat_kv(v, groups));
}

extern "C" pt_tensor *pt_attention_math(const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                                        const pt_tensor *mask, int causal, double scale) {
  return run_op("attention_math", {q, k, v}, [&] {
    check_attention_shapes(q->t, k->t, v->t);
    return attention_math(q->t, k->t, v->t, attention_mask(q->t, k->t, mask, causal), scale);
  });
}

extern "C" pt_tensor *pt_attention(const pt_tensor *q, const pt_tensor *k, const pt_tensor *v,
                                   const pt_tensor *mask, int causal, double scale) {
  return run_op("attention", {q, k, v}, [&] {
    check_attention_shapes(q->t, k->t, v->t);
    std::optional<double> sc;
    if (scale > 0) sc = scale;
    // is_causal in libtorch aligns to the top-left corner; ours only agrees when Tq == Tk.
    bool fused_causal = causal && !mask && q->t.size(2) == k->t.size(2);
    std::optional<at::Tensor> m = fused_causal ? std::nullopt : attention_mask(q->t, k->t, mask, causal);
    int64_t groups = q->t.size(1) / k->t.size(1);
    try {
#if PT_TORCH_AT_LEAST(2, 5)
      return at::scaled_dot_product_attention(q->t, k->t, v->t, m, 0.0, fused_causal, sc, groups > 1);
#else
      return at::scaled_dot_product_attention(q->t, repeat_kv(k->t, groups), repeat_kv(v->t, groups), m,
                                              0.0, fused_causal, sc);
#endif
    } catch (const c10::Error &e) {
      // Some dtype/device/mask combinations have no fused kernel: compute it step by step.
      static std::atomic<bool> said{false};
      log_fallback_once(said, "attention: no fused kernel for these inputs, using the step-by-step path", e);
      return attention_math(q->t, k->t, v->t, attention_mask(q->t, k->t, mask, causal), scale);
    }
  });
}


// In f32 whatever the input dtype, then back: what Hugging Face's LlamaRMSNorm does.
static at::Tensor rms_norm_composite(const at::Tensor &x, const at::Tensor &w, double eps) {
  at::Tensor x32 = x.to(at::kFloat);
  at::Tensor y = x32 * at::rsqrt(x32.pow(2).mean(-1, true) + eps);
  return w * y.to(x.scalar_type());
}

static at::Tensor rope_composite(const at::Tensor &x, const at::Tensor &cos, const at::Tensor &sin) {
  int64_t half = x.size(-1) / 2;
  return x * cos + at::cat({-x.slice(-1, half, 2 * half), x.slice(-1, 0, half)}, -1) * sin;
}

// ---------------------------------------------------------------- fused layer ops

static std::atomic<int> g_fused{PT_FUSED_OFF};

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Each op's kernels run where its tensors are: CUDA tensors through the CUDA kernels, CPU tensors
// (PT_FUSED_TEST_CPU) through their CPU references, the same arithmetic one thread per row.
fused_dtype fused_dt(const at::Tensor &t) { return t.scalar_type() == at::kBFloat16 ? FUSED_BF16 : FUSED_F32; }

// Runs an op's kernel where t is: cuda(stream, err, err_len), a fused_*_cuda launch, on t's own device
// (raw launches go to the current one, and a rank on cuda:1 is not on cuda:0) and stream; else ref(),
// its CPU reference. A failed launch throws its message.
template <class Cuda, class Ref>
void run_kernel(const at::Tensor &t, Cuda &&cuda, Ref &&ref) {
#ifdef PITH_FUSED_CUDA
  if (t.is_cuda()) {
    const c10::cuda::CUDAGuard device_guard(t.device());
    char err[256] = "";
    if (cuda(at::cuda::getCurrentCUDAStream(t.device().index()).stream(), err, (int)sizeof err))
      throw std::runtime_error(err);
    return;
  }
#else
  (void)cuda;
#endif
  ref();
}

// The kernels take f32 or bf16, one dtype throughout, on one device the mode covers.
bool fused_fits(std::initializer_list<const at::Tensor *> ts) {
  int mode = g_fused;
  if (mode == PT_FUSED_OFF) return false;
  const at::Tensor &first = **ts.begin();
  if (first.scalar_type() != at::kFloat && first.scalar_type() != at::kBFloat16) return false;
  if (first.is_cuda() ? !pt_fused_kernels_available() : !(first.is_cpu() && mode == PT_FUSED_TEST_CPU)) return false;
  for (const at::Tensor *t : ts)
    if (t->scalar_type() != first.scalar_type() || t->device() != first.device()) return false;
  return true;
}

// inputs x, [res], w (D); outputs y, [sum = x + res]. Saves the normalised input and each row's 1/rms.
struct rms_norm_node : torch::autograd::Function<rms_norm_node> {
  static variable_list forward(AutogradContext *ctx, const at::Tensor &x, const std::optional<at::Tensor> &res,
                               const at::Tensor &w, double eps) {
    at::Tensor xc = x.contiguous(), rc = res ? res->contiguous() : at::Tensor(), wc = w.contiguous();
    int64_t D = x.size(-1), rows = x.numel() / std::max<int64_t>(D, 1);
    at::Tensor y = at::empty_like(xc), sum = res ? at::empty_like(xc) : at::Tensor();
    at::Tensor r = at::empty({rows}, x.options().dtype(at::kFloat));
    const void *rp = res ? rc.data_ptr() : nullptr;
    void *sp = res ? sum.data_ptr() : nullptr;
    run_kernel(
        x,
        [&](void *stream, char *err, int n) {
          return fused_rms_norm_cuda(fused_dt(x), xc.data_ptr(), rp, sp, wc.data_ptr(), y.data_ptr(),
                                     r.data_ptr<float>(), (long)rows, (int)D, (float)eps, stream, err, n);
        },
        [&] {
          fused_rms_norm_ref(fused_dt(x), xc.data_ptr(), rp, sp, wc.data_ptr(), y.data_ptr(), r.data_ptr<float>(),
                             (long)rows, (int)D, (float)eps);
        });
    ctx->save_for_backward({res ? sum : xc, wc, r});
    ctx->saved_data["res"] = (bool)res;
    if (res) return {y, sum};
    return {y};
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    std::vector<at::Tensor> saved = ctx->get_saved_variables();
    const at::Tensor &v = saved[0], &w = saved[1], &r = saved[2];
    bool res = ctx->saved_data["res"].toBool();
    int64_t D = v.size(-1), rows = v.numel() / std::max<int64_t>(D, 1);
    at::Tensor gy = grads[0].defined() ? grads[0].contiguous() : at::zeros_like(v);
    at::Tensor gsum = res && grads[1].defined() ? grads[1].contiguous() : at::Tensor();
    bool want_w = ctx->needs_input_grad(res ? 2 : 1);  // counted over the tensors given: x, [res], w
    at::Tensor gv = at::empty_like(v);
    // The weight's gradient: one row of partial sums per CUDA thread block (one on the CPU).
    int64_t blocks = !want_w ? 0 : v.is_cuda() ? fused_rms_norm_backward_blocks((long)rows) : 1;
    at::Tensor partial = at::zeros({blocks, D}, v.options().dtype(at::kFloat));
    const void *gs = gsum.defined() ? gsum.data_ptr() : nullptr;
    float *gp = want_w ? partial.data_ptr<float>() : nullptr;
    run_kernel(
        v,
        [&](void *stream, char *err, int n) {
          return fused_rms_norm_backward_cuda(fused_dt(v), gy.data_ptr(), gs, v.data_ptr(), w.data_ptr(),
                                              r.data_ptr<float>(), gv.data_ptr(), gp, (long)rows, (int)D, stream, err,
                                              n);
        },
        [&] {
          fused_rms_norm_backward_ref(fused_dt(v), gy.data_ptr(), gs, v.data_ptr(), w.data_ptr(), r.data_ptr<float>(),
                                      gv.data_ptr(), gp, (long)rows, (int)D);
        });
    at::Tensor gw = want_w ? partial.sum(0).to(w.scalar_type()) : at::Tensor();
    return {gv, res ? gv : at::Tensor(), gw, at::Tensor()};
  }
};

struct swiglu_node : torch::autograd::Function<swiglu_node> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &gate, const at::Tensor &up) {
    at::Tensor g = gate.contiguous(), u = up.contiguous(), y = at::empty_like(g);
    run_kernel(
        g,
        [&](void *stream, char *err, int n) {
          return fused_swiglu_cuda(fused_dt(g), g.data_ptr(), u.data_ptr(), y.data_ptr(), (long)g.numel(), stream, err,
                                   n);
        },
        [&] { fused_swiglu_ref(fused_dt(g), g.data_ptr(), u.data_ptr(), y.data_ptr(), (long)g.numel()); });
    ctx->save_for_backward({g, u});
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    std::vector<at::Tensor> saved = ctx->get_saved_variables();
    const at::Tensor &g = saved[0], &u = saved[1];
    at::Tensor gy = grads[0].contiguous(), dg = at::empty_like(g), du = at::empty_like(u);
    run_kernel(
        g,
        [&](void *stream, char *err, int n) {
          return fused_swiglu_backward_cuda(fused_dt(g), gy.data_ptr(), g.data_ptr(), u.data_ptr(), dg.data_ptr(),
                                            du.data_ptr(), (long)g.numel(), stream, err, n);
        },
        [&] {
          fused_swiglu_backward_ref(fused_dt(g), gy.data_ptr(), g.data_ptr(), u.data_ptr(), dg.data_ptr(),
                                    du.data_ptr(), (long)g.numel());
        });
    return {dg, du};
  }
};

// x (B, H, T, hd) of any strides with a contiguous last dim; cos, sin broadcast to (B, 1, T, hd).
fused_rope_shape rope_shape(const at::Tensor &x, const at::Tensor &y, const at::Tensor &table) {
  fused_rope_shape s;
  s.B = x.size(0), s.H = x.size(1), s.T = x.size(2), s.hd = (int)x.size(3);
  at::Tensor t = table.expand({s.B, 1, s.T, s.hd});
  for (int d = 0; d < 3; d++) s.xs[d] = x.stride(d), s.ys[d] = y.stride(d);
  s.cs[0] = t.stride(0), s.cs[1] = t.stride(2);
  return s;
}

bool rope_fits(const at::Tensor &x, const at::Tensor &cos, const at::Tensor &sin) {
  if (x.dim() != 4 || x.size(-1) % 2 || x.stride(-1) != 1 || cos.dim() != 4 || cos.sizes() != sin.sizes() ||
      cos.strides() != sin.strides() || cos.size(1) != 1 || cos.stride(-1) != 1 || cos.requires_grad() ||
      sin.requires_grad())
    return false;
  for (int d : {0, 2, 3})
    if (cos.size(d) != x.size(d) && cos.size(d) != 1) return false;
  return cos.size(3) == x.size(3);
}

struct rope_node : torch::autograd::Function<rope_node> {
  static at::Tensor run(const at::Tensor &x, const at::Tensor &cos, const at::Tensor &sin, bool backward) {
    at::Tensor in = x.stride(-1) == 1 ? x : x.contiguous();
    at::Tensor y = at::empty_like(in);  // the same strides as x where x is dense (q and k are)
    if (y.stride(-1) != 1) y = at::empty(in.sizes(), in.options());
    fused_rope_shape s = rope_shape(in, y, cos);
    run_kernel(
        in,
        [&](void *stream, char *err, int n) {
          return fused_rope_cuda(fused_dt(in), in.data_ptr(), cos.data_ptr(), sin.data_ptr(), y.data_ptr(), s, backward,
                                 stream, err, n);
        },
        [&] {
          fused_rope_ref(fused_dt(in), in.data_ptr(), cos.data_ptr(), sin.data_ptr(), y.data_ptr(), s, backward);
        });
    return y;
  }
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &cos, const at::Tensor &sin) {
    ctx->save_for_backward({cos, sin});
    return run(x, cos, sin, false);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    std::vector<at::Tensor> saved = ctx->get_saved_variables();
    return {run(grads[0], saved[0], saved[1], true), at::Tensor(), at::Tensor()};
  }
};

// KV injection's tables, a pair per part (NULL: copied), as pt_kv_inject takes them.
struct kv_tables {
  std::optional<at::Tensor> pcos, psin, cos, sin;
};

// The kernel's shape: prefix, x and their gradients read or written through their own strides; the
// tables broadcast to (B, 1, rows, hd).
fused_kv_shape kv_shape(const at::Tensor &prefix, const at::Tensor &x, const kv_tables &tb) {
  fused_kv_shape s = {};
  s.B = x.size(0), s.H = x.size(1), s.P = prefix.size(2), s.T = x.size(2), s.hd = (int)x.size(3);
  for (int d = 0; d < 3; d++) s.ps[d] = prefix.stride(d), s.xs[d] = x.stride(d);
  auto table_strides = [&](const std::optional<at::Tensor> &t, long rows, long *out) {
    if (!t) return;
    at::Tensor e = t->expand({s.B, 1, rows, s.hd});
    out[0] = e.stride(0), out[1] = e.stride(2);
  };
  table_strides(tb.pcos, s.P, s.pcs);
  table_strides(tb.cos, s.T, s.cs);
  return s;
}

bool kv_inject_fits(const at::Tensor &prefix, const at::Tensor &x, const kv_tables &tb) {
  const at::Tensor *none = &x;  // an absent table stands in as x, which fits its own checks
  if (!fused_fits({&prefix, &x, tb.pcos ? &*tb.pcos : none, tb.psin ? &*tb.psin : none, tb.cos ? &*tb.cos : none,
                   tb.sin ? &*tb.sin : none}))
    return false;
  for (const at::Tensor *t : {&prefix, &x})
    if (t->stride(-1) != 1 || t->size(-1) % 2) return false;
  return (!tb.pcos || rope_fits(prefix, *tb.pcos, *tb.psin)) && (!tb.cos || rope_fits(x, *tb.cos, *tb.sin));
}

const void *table_data(const std::optional<at::Tensor> &t) { return t ? t->data_ptr() : nullptr; }

// Forward: joint from prefix and x. Backward: joint is the gradient, prefix and x receive theirs.
void kv_inject_run(const at::Tensor &prefix, const at::Tensor &x, const kv_tables &tb, const at::Tensor &joint,
                   bool backward) {
  fused_kv_shape s = kv_shape(prefix, x, tb);
  const void *pc = table_data(tb.pcos), *ps = table_data(tb.psin), *c = table_data(tb.cos), *sn = table_data(tb.sin);
  run_kernel(
      x,
      [&](void *stream, char *err, int n) {
        return fused_kv_inject_cuda(fused_dt(x), prefix.data_ptr(), x.data_ptr(), pc, ps, c, sn, joint.data_ptr(), s,
                                    backward, stream, err, n);
      },
      [&] {
        fused_kv_inject_ref(fused_dt(x), prefix.data_ptr(), x.data_ptr(), pc, ps, c, sn, joint.data_ptr(), s, backward);
      });
}

// inputs prefix, x, and the four tables (undefined where absent); output joint. Saves the tables.
struct kv_inject_node : torch::autograd::Function<kv_inject_node> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &prefix, const at::Tensor &x,
                            const std::optional<at::Tensor> &pcos, const std::optional<at::Tensor> &psin,
                            const std::optional<at::Tensor> &cos, const std::optional<at::Tensor> &sin) {
    kv_tables tb = {pcos, psin, cos, sin};
    at::Tensor joint = at::empty({x.size(0), x.size(1), prefix.size(2) + x.size(2), x.size(3)}, x.options());
    kv_inject_run(prefix, x, tb, joint, false);
    ctx->saved_data["rotate_prefix"] = pcos.has_value();
    ctx->saved_data["rotate_x"] = cos.has_value();
    ctx->saved_data["P"] = prefix.size(2);
    std::vector<at::Tensor> keep;
    for (const std::optional<at::Tensor> &t : {pcos, psin, cos, sin})
      if (t) keep.push_back(*t);
    ctx->save_for_backward(keep);
    return joint;
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    std::vector<at::Tensor> saved = ctx->get_saved_variables();
    kv_tables tb;
    size_t i = 0;
    if (ctx->saved_data["rotate_prefix"].toBool()) tb.pcos = saved[i++], tb.psin = saved[i++];
    if (ctx->saved_data["rotate_x"].toBool()) tb.cos = saved[i++], tb.sin = saved[i++];
    at::Tensor g = grads[0].contiguous();
    int64_t P = ctx->saved_data["P"].toInt(), B = g.size(0), H = g.size(1), hd = g.size(3);
    at::Tensor gp = at::empty({B, H, P, hd}, g.options()), gx = at::empty({B, H, g.size(2) - P, hd}, g.options());
    kv_inject_run(gp, gx, tb, g, true);
    return {gp, gx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// inputs x, keep (0 or 1, drawn as the composite path draws it), scale; saves keep as one byte.
struct dropout_node : torch::autograd::Function<dropout_node> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &keep, double scale) {
    at::Tensor xc = x.contiguous(), kc = keep.contiguous(), y = at::empty_like(xc);
    at::Tensor mask = at::empty(xc.sizes(), xc.options().dtype(at::kByte));
    run_kernel(
        xc,
        [&](void *stream, char *err, int n) {
          return fused_dropout_cuda(fused_dt(xc), xc.data_ptr(), kc.data_ptr(), (float)scale, y.data_ptr(),
                                    mask.data_ptr<uint8_t>(), (long)xc.numel(), stream, err, n);
        },
        [&] {
          fused_dropout_ref(fused_dt(xc), xc.data_ptr(), kc.data_ptr(), (float)scale, y.data_ptr(),
                            mask.data_ptr<uint8_t>(), (long)xc.numel());
        });
    ctx->saved_data["mask"] = mask;
    ctx->saved_data["scale"] = scale;
    return y;
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    at::Tensor mask = ctx->saved_data["mask"].toTensor(), gy = grads[0].contiguous(), gx = at::empty_like(gy);
    float scale = (float)ctx->saved_data["scale"].toDouble();
    run_kernel(
        gy,
        [&](void *stream, char *err, int n) {
          return fused_dropout_backward_cuda(fused_dt(gy), gy.data_ptr(), mask.data_ptr<uint8_t>(), scale,
                                             gx.data_ptr(), (long)gy.numel(), stream, err, n);
        },
        [&] {
          fused_dropout_backward_ref(fused_dt(gy), gy.data_ptr(), mask.data_ptr<uint8_t>(), scale, gx.data_ptr(),
                                     (long)gy.numel());
        });
    return {gx, at::Tensor(), at::Tensor()};
  }
};
}  // namespace

extern "C" int pt_fused_kernels_available(void) {
#ifdef PITH_FUSED_CUDA
  return 1;
#else
  return 0;
#endif
}

extern "C" int pt_set_fused_kernels(int mode) {
  if (mode != PT_FUSED_OFF && mode != PT_FUSED_ON && mode != PT_FUSED_TEST_CPU) {
    set_error("fused kernels: mode " + std::to_string(mode) + " is not one of off (0), on (1), test_cpu (2)");
    return -1;
  }
  if (mode == PT_FUSED_ON && !pt_fused_kernels_available()) {
    set_error("fused kernels: this pith was built without CUDA");
    return -1;
  }
  g_fused = mode;
  return 0;
}

extern "C" int pt_fused_kernels(void) { return g_fused; }

extern "C" pt_tensor *pt_rms_norm(const pt_tensor *x, const pt_tensor *weight, double eps) {
  return run_op("rms_norm", {x, weight}, [&] {
    if (fused_fits({&x->t, &weight->t}) && weight->t.dim() == 1 && weight->t.size(0) == x->t.size(-1))
      return rms_norm_node::apply(x->t, std::nullopt, weight->t, eps)[0];
    return rms_norm_composite(x->t, weight->t, eps);
  });
}

extern "C" pt_tensor *pt_add_rms_norm(const pt_tensor *x, const pt_tensor *delta, const pt_tensor *weight, double eps,
                                      pt_tensor **sum) {
  *sum = nullptr;
  at::Tensor total;
  pt_tensor *y = run_op("add_rms_norm", {x, delta, weight}, [&] {
    if (fused_fits({&x->t, &delta->t, &weight->t}) && x->t.sizes() == delta->t.sizes() && weight->t.dim() == 1 &&
        weight->t.size(0) == x->t.size(-1)) {
      variable_list out = rms_norm_node::apply(x->t, delta->t, weight->t, eps);
      total = out[1];
      return out[0];
    }
    total = x->t + delta->t;
    return rms_norm_composite(total, weight->t, eps);
  });
  if (y) *sum = wrap(total);
  return y;
}

extern "C" pt_tensor *pt_swiglu(const pt_tensor *gate, const pt_tensor *up) {
  return run_op("swiglu", {gate, up}, [&] {
    if (fused_fits({&gate->t, &up->t}) && gate->t.sizes() == up->t.sizes()) return swiglu_node::apply(gate->t, up->t);
    return at::silu(gate->t) * up->t;
  });
}

extern "C" pt_tensor *pt_rope(const pt_tensor *x, const pt_tensor *cos, const pt_tensor *sin) {
  return run_op("rope", {x, cos, sin}, [&] {
    if (x->t.dim() < 1 || x->t.size(-1) % 2) throw std::invalid_argument("x's last dim must be even");
    if (fused_fits({&x->t, &cos->t, &sin->t}) && rope_fits(x->t, cos->t, sin->t))
      return rope_node::apply(x->t, cos->t, sin->t);
    return rope_composite(x->t, cos->t, sin->t);
  });
}

extern "C" pt_tensor *pt_kv_inject(const pt_tensor *prefix, const pt_tensor *x, const pt_tensor *pcos,
                                   const pt_tensor *psin, const pt_tensor *cos, const pt_tensor *sin) {
  return run_op("kv_inject", {prefix, x}, [&] {
    if (!pcos != !psin || !cos != !sin) throw std::invalid_argument("each pair of tables (cos, sin) goes together");
    const at::Tensor &p = prefix->t, &t = x->t;
    if (p.dim() != 4 || t.dim() != 4 || p.size(0) != t.size(0) || p.size(1) != t.size(1) || p.size(3) != t.size(3))
      throw std::invalid_argument("prefix and x must be (B, H, P, hd) and (B, H, T, hd), the same B, H and hd");
    kv_tables tb;
    if (pcos) tb.pcos = pcos->t, tb.psin = psin->t;
    if (cos) tb.cos = cos->t, tb.sin = sin->t;
    if (kv_inject_fits(p, t, tb)) return kv_inject_node::apply(p, t, tb.pcos, tb.psin, tb.cos, tb.sin);
    return at::cat({pcos ? rope_composite(p, pcos->t, psin->t) : p, cos ? rope_composite(t, cos->t, sin->t) : t}, 2);
  });
}

extern "C" pt_tensor *pt_dropout(const pt_tensor *a, double p, pt_gen *g) {
  return run_op("dropout", {a}, [&] {
    if (p < 0 || p >= 1) throw std::invalid_argument("p = " + std::to_string(p) + " is outside [0, 1)");
    if (p == 0) return a->t;
    at::Tensor keep = at::empty_like(a->t).bernoulli_(1 - p, gen_of(g));
    if (fused_fits({&a->t, &keep})) return dropout_node::apply(a->t, keep, 1.0 / (1 - p));  // the same masks
    return a->t * keep * (1.0 / (1 - p));
  });
}

extern "C" pt_tensor *pt_add_scaled(const pt_tensor *a, const pt_tensor *b, double s) {
  return run_op("add_scaled", {a, b}, [&] {
    if (fused_fits({&a->t, &b->t})) return at::add(a->t, b->t, s);  // one kernel: a + s·b
    return a->t + b->t * s;
  });
}

extern "C" pt_tensor *pt_layer_norm(const pt_tensor *x, const pt_tensor *weight, const pt_tensor *bias, double eps) {
  return run_op("layer_norm", {x, weight, bias}, [&] {
    if (x->t.dim() < 1) throw std::invalid_argument("x has no feature dim");
    int64_t D = x->t.size(-1);
    if (weight->t.dim() != 1 || bias->t.dim() != 1 || weight->t.size(0) != D || bias->t.size(0) != D)
      throw std::invalid_argument("weight and bias must be (" + std::to_string(D) + ")");
    return at::layer_norm(x->t, {D}, weight->t, bias->t, eps);
  });
}

// ---------------------------------------------------------------- the LM head's loss, in chunks

namespace {
struct linear_ce_node : torch::autograd::Function<linear_ce_node> {
  // logits of rows [s, e): in h's dtype for the fused kernels, which read them as they are; in f32 for
  // the composite ops.
  static at::Tensor chunk_logits(const at::Tensor &h, const at::Tensor &w, int64_t s, int64_t e, bool fused) {
    at::Tensor logits = at::linear(h.slice(0, s, e), w);
    return fused ? logits.contiguous() : logits.to(at::kFloat);
  }

  static torch::autograd::variable_list forward(torch::autograd::AutogradContext *ctx, const at::Tensor &h,
                                                const at::Tensor &w, const at::Tensor &targets,
                                                const std::optional<at::Tensor> &weights, int64_t ignore,
                                                int64_t chunk) {
    int64_t N = h.size(0);
    at::Tensor valid = targets.ne(ignore), safe = at::where(valid, targets, at::zeros_like(targets));
    at::Tensor coef = weights ? weights->to(at::kFloat) * valid : valid.to(at::kFloat);  // each row's weight
    at::Tensor denom = weights ? weights->to(at::kFloat).sum() : valid.sum().to(at::kFloat);
    at::Tensor total = at::zeros({}, h.options().dtype(at::kFloat)), lse = at::empty({N}, total.options());
    bool fused = fused_fits({&h, &w}) && targets.device() == h.device();  // the kernels read the targets too
    for (int64_t s = 0; s < N; s += chunk) {
      int64_t e = std::min(N, s + chunk);
      at::Tensor logits = chunk_logits(h, w, s, e, fused), t = safe.slice(0, s, e), l, picked;
      if (fused) {  // one kernel: each row's log-sum-exp and its target's logit, no f32 copy of the logits
        l = lse.slice(0, s, e), picked = at::empty_like(l);
        long rows = (long)(e - s), V = (long)logits.size(1);
        run_kernel(
            logits,
            [&](void *stream, char *err, int n) {
              return fused_ce_cuda(fused_dt(logits), logits.data_ptr(), t.data_ptr<int64_t>(), l.data_ptr<float>(),
                                   picked.data_ptr<float>(), rows, V, stream, err, n);
            },
            [&] {
              fused_ce_ref(fused_dt(logits), logits.data_ptr(), t.data_ptr<int64_t>(), l.data_ptr<float>(),
                           picked.data_ptr<float>(), rows, V);
            });
      } else {
        l = at::logsumexp(logits, -1), picked = logits.gather(1, t.unsqueeze(1)).squeeze(1);
        lse.slice(0, s, e).copy_(l);
      }
      total += ((l - picked) * coef.slice(0, s, e)).sum();
    }
    ctx->saved_data["fused"] = fused;
    ctx->save_for_backward({h, w});
    ctx->saved_data["safe"] = safe;
    ctx->saved_data["coef"] = coef;
    ctx->saved_data["lse"] = lse;
    ctx->saved_data["denom"] = denom;
    ctx->saved_data["chunk"] = chunk;
    return {total / denom};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    std::vector<at::Tensor> saved = ctx->get_saved_variables();
    const at::Tensor &h = saved[0], &w = saved[1];
    at::Tensor safe = ctx->saved_data["safe"].toTensor(), lse = ctx->saved_data["lse"].toTensor();
    // d loss / d logit = coef · (softmax − onehot(target)) · grad / denom, per row
    at::Tensor scale =
        ctx->saved_data["coef"].toTensor() * (grads[0].to(at::kFloat) / ctx->saved_data["denom"].toTensor());
    int64_t N = h.size(0), chunk = ctx->saved_data["chunk"].toInt();
    bool want_h = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    at::Tensor dh = want_h ? at::empty_like(h) : at::Tensor();
    at::Tensor dw = want_w ? at::zeros(w.sizes(), w.options().dtype(at::kFloat)) : at::Tensor();
    bool fused = ctx->saved_data["fused"].toBool();
    for (int64_t s = 0; s < N; s += chunk) {
      int64_t e = std::min(N, s + chunk);
      at::Tensor logits = chunk_logits(h, w, s, e, fused), d;
      if (fused) {  // one kernel from the logits to their gradient, in h's dtype
        d = at::empty_like(logits);
        at::Tensor t = safe.slice(0, s, e), l = lse.slice(0, s, e), sc = scale.slice(0, s, e).contiguous();
        long rows = (long)(e - s), V = (long)logits.size(1);
        run_kernel(
            logits,
            [&](void *stream, char *err, int n) {
              return fused_ce_backward_cuda(fused_dt(logits), logits.data_ptr(), t.data_ptr<int64_t>(),
                                            l.data_ptr<float>(), sc.data_ptr<float>(), d.data_ptr(), rows, V, stream,
                                            err, n);
            },
            [&] {
              fused_ce_backward_ref(fused_dt(logits), logits.data_ptr(), t.data_ptr<int64_t>(), l.data_ptr<float>(),
                                    sc.data_ptr<float>(), d.data_ptr(), rows, V);
            });
      } else {
        at::Tensor p = (logits - lse.slice(0, s, e).unsqueeze(1)).exp_();
        p.scatter_add_(1, safe.slice(0, s, e).unsqueeze(1), at::full({e - s, 1}, -1.0, p.options()));
        d = (p * scale.slice(0, s, e).unsqueeze(1)).to(h.scalar_type());
      }
      if (want_h) dh.slice(0, s, e).copy_(at::matmul(d, w));
      if (want_w) dw += at::matmul(d.t(), h.slice(0, s, e)).to(at::kFloat);
    }
    return {dh, want_w ? dw.to(w.scalar_type()) : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

extern "C" pt_tensor *pt_linear_cross_entropy(const pt_tensor *h, const pt_tensor *w, const pt_tensor *targets,
                                              const pt_tensor *weights, int64_t ignore_index, int64_t chunk_rows) {
  return run_op("linear_cross_entropy", {h, w, targets}, [&] {
    if (h->t.dim() != 2 || w->t.dim() != 2 || h->t.size(1) != w->t.size(1))
      throw std::invalid_argument("want h (N, D) and w (V, D)");
    if (targets->t.scalar_type() != at::kLong || targets->t.dim() != 1 || targets->t.size(0) != h->t.size(0))
      throw std::invalid_argument("targets must be (N) i64");
    if (weights && (weights->t.dim() != 1 || weights->t.size(0) != h->t.size(0)))
      throw std::invalid_argument("weights must be (N)");
    if (chunk_rows < 1) throw std::invalid_argument("chunk_rows must be >= 1");
    std::optional<at::Tensor> wt = weights ? std::optional<at::Tensor>(weights->t) : std::nullopt;
    return linear_ce_node::apply(h->t, w->t, targets->t, wt, ignore_index, chunk_rows)[0];
  });
}

// ---------------------------------------------------------------- autograd

extern "C" int pt_set_requires_grad(pt_tensor *t, int on) {
  if (!t) {
    set_error("set_requires_grad: the input is NULL (an earlier op failed)");
    return -1;
  }
  return run_status("set_requires_grad", [&] { t->t.requires_grad_(on != 0); });
}

extern "C" int pt_requires_grad(const pt_tensor *t) { return t && t->t.requires_grad(); }

extern "C" int pt_backward(const pt_tensor *loss) {
  if (!loss) {
    set_error("backward: the loss is NULL (an earlier op failed)");
    return -1;
  }
  return run_status("backward", [&] {
    if (loss->t.numel() != 1) throw std::invalid_argument("the loss " + shape_str(loss->t) + " is not a single value");
    if (!loss->t.requires_grad()) throw std::invalid_argument("the loss does not depend on anything that requires grad");
    loss->t.backward();
  });
}

extern "C" pt_tensor *pt_grad(const pt_tensor *t) {
  if (!t || !t->t.grad().defined()) return nullptr;
  return run_op("grad", {t}, [&] { return t->t.grad(); });
}

extern "C" void pt_zero_grad(pt_tensor *t) {
  if (t) t->t.mutable_grad().reset();
}

extern "C" int pt_grad_enabled(void) { return c10::GradMode::is_enabled(); }

extern "C" int pt_set_grad_enabled(int on) {
  int was = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(on != 0);
  return was;
}

extern "C" double pt_clip_grad_norm(pt_tensor *const *params, int n, double max_norm) {
  double norm = NAN;
  run_status("clip_grad_norm", [&] {
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> grads;
    for (int i = 0; i < n; i++) {
      if (!params[i]) throw std::invalid_argument("param " + std::to_string(i) + " is NULL");
      if (params[i]->t.grad().defined()) grads.push_back(params[i]->t.grad());
    }
    if (grads.empty()) {
      norm = 0;
      return;
    }
    at::Tensor sq = at::zeros({}, grads[0].options().dtype(at::kFloat));
    for (const at::Tensor &g : grads) sq += g.to(at::kFloat).pow(2).sum();
    norm = std::sqrt(sq.item<double>());
    if (max_norm > 0 && norm > max_norm) {
      double coef = max_norm / (norm + 1e-6);  // as torch.nn.utils.clip_grad_norm_
      for (at::Tensor &g : grads) g.mul_(coef);
    }
  });
  return norm;
}

extern "C" int pt_copy_(pt_tensor *dst, const pt_tensor *src) {
  if (!dst || !src) {
    set_error("copy_: an input is NULL (an earlier op failed)");
    return -1;
  }
  return run_status("copy_", [&] {
    if (dst->t.sizes() != src->t.sizes())
      throw std::invalid_argument(shape_str(dst->t) + " <- " + shape_str(src->t) + ": shapes differ");
    c10::NoGradGuard no_grad;
    dst->t.copy_(src->t);
  });
}

// ---------------------------------------------------------------- activation checkpointing

namespace {
// fn on handles of ins, in a scope of its own; its outputs. Throws fn's error (taken off the thread).
std::vector<at::Tensor> run_checkpoint_fn(pt_checkpoint_fn fn, const std::string &ctx,
                                          const std::vector<at::Tensor> &ins, int n_out) {
  pt_scope s = pt_scope_begin();
  std::vector<pt_tensor *> hin, hout((size_t)n_out, nullptr);
  for (const at::Tensor &t : ins) hin.push_back(wrap(t));
  int rc = fn(ctx.data(), hin.data(), (int)hin.size(), hout.data(), n_out);
  std::vector<at::Tensor> outs;
  for (pt_tensor *h : hout)
    if (h) outs.push_back(h->t);
  std::string msg = g_error;
  g_error.clear();
  pt_scope_end(s);
  if (rc != 0 || !msg.empty() || (int)outs.size() != n_out)
    throw std::runtime_error(msg.empty() ? "the checkpointed function failed without a message" : msg);
  return outs;
}

struct checkpoint_node : torch::autograd::Function<checkpoint_node> {
  // ins as a TensorList, which autograd counts tensor by tensor (a std::vector would count as one
  // non-tensor argument); then fn, its context bytes, the generator and the output count.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext *ctx,
                                                at::TensorList ins, int64_t fn,
                                                const std::string &fn_ctx, int64_t gen, int64_t n_out) {
    std::string requires;
    for (const at::Tensor &t : ins) requires += t.requires_grad() ? '1' : '0';
    ctx->saved_data["fn"] = fn;
    ctx->saved_data["ctx"] = fn_ctx;
    ctx->saved_data["gen"] = gen;
    ctx->saved_data["n_out"] = n_out;
    ctx->saved_data["requires"] = requires;
    if (gen) {
      at::Generator g = reinterpret_cast<pt_gen *>(gen)->g;
      std::lock_guard<std::mutex> lock(g.mutex());
      ctx->saved_data["gen_state"] = g.get_state();
    }
    ctx->save_for_backward(ins.vec());
    return run_checkpoint_fn(reinterpret_cast<pt_checkpoint_fn>(fn), fn_ctx, ins.vec(), (int)n_out);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    std::vector<at::Tensor> saved = ctx->get_saved_variables(), ins;
    std::string requires = ctx->saved_data["requires"].toStringRef();
    for (size_t i = 0; i < saved.size(); i++) ins.push_back(saved[i].detach().requires_grad_(requires[i] == '1'));
    auto *gen = reinterpret_cast<pt_gen *>(ctx->saved_data["gen"].toInt());
    at::Tensor now;  // the generator's state at backward, put back after the second run
    if (gen) {
      std::lock_guard<std::mutex> lock(gen->g.mutex());
      now = gen->g.get_state();
      gen->g.set_state(ctx->saved_data["gen_state"].toTensor());
    }
    auto restore = [&] {
      if (!gen) return;
      std::lock_guard<std::mutex> lock(gen->g.mutex());
      gen->g.set_state(now);
    };
    std::vector<at::Tensor> outs;
    try {
      at::AutoGradMode on(true);
      outs = run_checkpoint_fn(reinterpret_cast<pt_checkpoint_fn>(ctx->saved_data["fn"].toInt()),
                               ctx->saved_data["ctx"].toStringRef(), ins, (int)ctx->saved_data["n_out"].toInt());
    } catch (...) {
      restore();
      throw;
    }
    restore();
    std::vector<at::Tensor> roots, root_grads;
    for (size_t i = 0; i < outs.size(); i++)
      if (outs[i].requires_grad() && grads[i].defined()) roots.push_back(outs[i]), root_grads.push_back(grads[i]);
    if (!roots.empty()) torch::autograd::backward(roots, root_grads);
    torch::autograd::variable_list result;
    for (const at::Tensor &t : ins) result.push_back(t.requires_grad() ? t.grad() : at::Tensor());
    for (int i = 0; i < 4; i++) result.emplace_back();  // fn, its context, gen, n_out
    return result;
  }
};
}  // namespace

extern "C" int pt_checkpoint(pt_checkpoint_fn fn, const void *ctx, size_t ctx_size, pt_tensor *const *in, int n_in,
                             pt_gen *gen, pt_tensor **out, int n_out) {
  for (int i = 0; i < n_out; i++) out[i] = nullptr;
  for (int i = 0; i < n_in; i++)
    if (!in[i]) {
      set_error("checkpoint: input " + std::to_string(i) + " is NULL (an earlier op failed)");
      return -1;
    }
  std::string fn_ctx((const char *)ctx, ctx_size);
  std::vector<at::Tensor> ins, outs;
  for (int i = 0; i < n_in; i++) ins.push_back(in[i]->t);
  // The outputs join the graph only through an input that requires grad. With none (a frozen
  // embedding's output), parameters read inside fn would get no gradient: the first floating-point
  // input is made to require one, as transformers' enable_input_require_grads does.
  bool joined = false;
  for (const at::Tensor &t : ins) joined = joined || t.requires_grad();
  for (size_t i = 0; !joined && c10::GradMode::is_enabled() && i < ins.size(); i++)
    if (ins[i].is_floating_point()) ins[i] = ins[i].detach().requires_grad_(true), joined = true;
  int rc = run_status("checkpoint", [&] {
    outs = c10::GradMode::is_enabled() ? checkpoint_node::apply(at::TensorList(ins), reinterpret_cast<int64_t>(fn),
                                                                fn_ctx, reinterpret_cast<int64_t>(gen), (int64_t)n_out)
                                       : run_checkpoint_fn(fn, fn_ctx, ins, n_out);
  });
  if (rc) return -1;
  for (int i = 0; i < n_out; i++) out[i] = wrap(outs[(size_t)i]);
  return 0;
}

// ---------------------------------------------------------------- random generators

extern "C" pt_gen *pt_gen_new(uint64_t seed, pt_device dev) {
  pt_gen *g = nullptr;
  run_status("gen_new", [&] {
    at::Generator gen = dev == PT_CPU ? at::make_generator<at::CPUGeneratorImpl>(seed)
                                      : at::globalContext().defaultGenerator(to_device(dev)).clone();
    gen.set_current_seed(seed);
    g = new pt_gen{gen};
  });
  return g;
}

extern "C" void pt_gen_free(pt_gen *g) { delete g; }

extern "C" size_t pt_gen_get_state(const pt_gen *g, void *buf, size_t len) {
  if (!g) return 0;
  size_t n = 0;
  run_status("gen_get_state", [&] {
    at::Generator gen = g->g;  // a handle to the same state
    std::lock_guard<std::mutex> lock(gen.mutex());
    at::Tensor s = gen.get_state();
    n = (size_t)s.numel();
    if (buf && len >= n) memcpy(buf, s.data_ptr(), n);
  });
  return n;
}

extern "C" int pt_gen_set_state(pt_gen *g, const void *buf, size_t len) {
  if (!g || !buf) {
    set_error("gen_set_state: NULL generator or buffer");
    return -1;
  }
  return run_status("gen_set_state", [&] {
    at::Tensor s = at::empty({(int64_t)len}, at::kByte);
    memcpy(s.data_ptr(), buf, len);
    std::lock_guard<std::mutex> lock(g->g.mutex());
    g->g.set_state(s);
  });
}

// ---------------------------------------------------------------- AdamW

struct pt_adamw {
  pt_adamw_config cfg;
  std::vector<pt_tensor *> params;     // referenced, not owned
  std::vector<pt_tensor *> exp_avg;    // owned, kept handles
  std::vector<pt_tensor *> exp_avg_sq;
  at::Tensor step;                      // f32 scalar, as the fused kernel wants it
  int64_t steps = 0;
};

static pt_tensor *kept(at::Tensor t) { return pt_keep(wrap(std::move(t))); }

extern "C" pt_adamw *pt_adamw_new(pt_tensor *const *params, int n, pt_adamw_config cfg) {
  pt_adamw *o = nullptr;
  run_status("adamw_new", [&] {
    if (n <= 0) throw std::invalid_argument("no parameters");
    o = new pt_adamw;
    o->cfg = cfg;
    for (int i = 0; i < n; i++) {
      if (!params[i]) {
        pt_adamw_free(o);
        o = nullptr;
        throw std::invalid_argument("param " + std::to_string(i) + " is NULL");
      }
      o->params.push_back(params[i]);
      o->exp_avg.push_back(kept(at::zeros_like(params[i]->t, at::MemoryFormat::Contiguous)));
      o->exp_avg_sq.push_back(kept(at::zeros_like(params[i]->t, at::MemoryFormat::Contiguous)));
    }
  });
  return o;
}

extern "C" void pt_adamw_free(pt_adamw *o) {
  if (!o) return;
  for (pt_tensor *t : o->exp_avg) pt_free(t);
  for (pt_tensor *t : o->exp_avg_sq) pt_free(t);
  delete o;
}

extern "C" void pt_adamw_set_lr(pt_adamw *o, double lr) {
  if (o) o->cfg.lr = lr;
}

// The update of torch.optim.AdamW, one parameter at a time: the fallback of the fused kernel.
static void adamw_update(const pt_adamw_config &c, int64_t step, at::Tensor &p, const at::Tensor &g,
                         at::Tensor &m, at::Tensor &v) {
  p.mul_(1 - c.lr * c.weight_decay);
  m.lerp_(g, 1 - c.beta1);
  v.mul_(c.beta2).addcmul_(g, g, 1 - c.beta2);
  double bc1 = 1 - std::pow(c.beta1, (double)step), bc2 = 1 - std::pow(c.beta2, (double)step);
  at::Tensor denom = (v.sqrt() / std::sqrt(bc2)).add_(c.eps);
  p.addcdiv_(m, denom, -c.lr / bc1);
}

extern "C" int pt_adamw_step(pt_adamw *o) {
  if (!o) {
    set_error("adamw_step: the optimizer is NULL");
    return -1;
  }
  return run_status("adamw_step", [&] {
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> p, g, m, v, steps;
    o->steps++;
    for (size_t i = 0; i < o->params.size(); i++) {
      const at::Tensor &grad = o->params[i]->t.grad();
      if (!grad.defined()) continue;
      p.push_back(o->params[i]->t);
      g.push_back(grad);
      m.push_back(o->exp_avg[i]->t);
      v.push_back(o->exp_avg_sq[i]->t);
      steps.push_back(at::full({}, (double)o->steps, at::TensorOptions().dtype(at::kFloat).device(grad.device())));
    }
    if (p.empty()) return;
    const pt_adamw_config &c = o->cfg;
    try {
      at::_fused_adamw_(p, g, m, v, {}, steps, c.lr, c.beta1, c.beta2, c.weight_decay, c.eps, false, false);
    } catch (const c10::Error &e) {
      static std::atomic<bool> said{false};
      log_fallback_once(said, "adamw: no fused kernel for these parameters, updating tensor by tensor", e);
      for (size_t i = 0; i < p.size(); i++) adamw_update(c, o->steps, p[i], g[i], m[i], v[i]);
    }
  });
}

extern "C" void pt_adamw_zero_grad(pt_adamw *o) {
  if (!o) return;
  for (pt_tensor *t : o->params) pt_zero_grad(t);
}

extern "C" int64_t pt_adamw_steps(const pt_adamw *o) { return o ? o->steps : -1; }

extern "C" pt_tensor *pt_adamw_exp_avg(pt_adamw *o, int i) {
  return (o && i >= 0 && i < (int)o->exp_avg.size()) ? o->exp_avg[i] : nullptr;
}

extern "C" pt_tensor *pt_adamw_exp_avg_sq(pt_adamw *o, int i) {
  return (o && i >= 0 && i < (int)o->exp_avg_sq.size()) ? o->exp_avg_sq[i] : nullptr;
}

extern "C" int pt_adamw_set_steps(pt_adamw *o, int64_t steps) {
  if (!o || steps < 0) {
    set_error("adamw_set_steps: NULL optimizer or negative steps");
    return -1;
  }
  o->steps = steps;
  return 0;
}

// ---------------------------------------------------------------- distributed (c10d)
// Gloo's headers come from outside the torch wheel (Debian's libgloo-dev): the wheel has the c10d
// headers and the Gloo code inside libtorch_cpu, but not gloo/*.h. Only declarations are used, and
// every Gloo object the process group holds is reached through a pointer, so their version does
// not change the layout pith sees.
#ifdef PITH_HAVE_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef PITH_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#ifdef PITH_HAVE_GLOO
struct pt_dist {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;
  int rank, world;
  at::Device dev;
  std::chrono::milliseconds timeout;
};

// Wait for a collective; a peer that died or timed out becomes an exception that names the op.
static void dist_wait(pt_dist *d, const c10::intrusive_ptr<c10d::Work> &w, const char *what) {
  if (!w->wait(d->timeout)) throw std::runtime_error(std::string(what) + ": timed out");
}
#endif

extern "C" int pt_dist_available(pt_device dev) {
#ifdef PITH_HAVE_GLOO
  if (dev == PT_CPU) return 1;
#endif
#ifdef PITH_HAVE_NCCL
  if (dev >= 0) return 1;
#endif
  (void)dev;
  return 0;
}

extern "C" pt_dist *pt_dist_init(const char *addr, int port, int rank, int world, int agent_store, pt_device dev,
                                 double timeout_s) {
  pt_dist *out = nullptr;
  run_status("dist_init", [&] {
    if (!addr || !*addr || port <= 0 || port > 65535 || world < 1 || rank < 0 || rank >= world || timeout_s <= 0)
      throw std::invalid_argument("bad arguments (addr '" + std::string(addr ? addr : "") + "', port " +
                                  std::to_string(port) + ", rank " + std::to_string(rank) + " of " +
                                  std::to_string(world) + ")");
    if (!pt_dist_available(dev))
      throw std::runtime_error(dev == PT_CPU ? "this pith was built without Gloo's headers (Debian libgloo-dev)"
                                             : "this pith was built without NCCL");
#ifdef PITH_HAVE_GLOO
    auto timeout = std::chrono::milliseconds((int64_t)(timeout_s * 1000));
    c10d::TCPStoreOptions so;
    so.port = (uint16_t)port;
    so.isServer = !agent_store && rank == 0;
    so.numWorkers = world;
    so.waitWorkers = false;  // the process group's own rendezvous waits for every rank
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(addr), so);
    auto store = c10::make_intrusive<c10d::PrefixStore>("pith", tcp);
    std::unique_ptr<pt_dist> d(new pt_dist{store, {}, rank, world, to_device(dev), timeout});
    if (dev == PT_CPU) {
      auto opts = c10d::ProcessGroupGloo::Options::create_default(timeout);
      opts->devices.clear();
      const char *ifname = getenv("GLOO_SOCKET_IFNAME");  // as torch.distributed reads it
      opts->devices.push_back(ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname, false)
                                                : c10d::ProcessGroupGloo::createDefaultDevice(false));
      d->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
    } else {
#ifdef PITH_HAVE_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      d->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
#endif
    }
    out = d.release();
#endif
  });
  return out;
}

extern "C" void pt_dist_free(pt_dist *d) {
#ifdef PITH_HAVE_GLOO
  if (!d) return;
  try {
    d->pg.reset();
    d->store.reset();
  } catch (...) {
  }
  delete d;
#else
  (void)d;
#endif
}

extern "C" int pt_dist_broadcast(pt_dist *d, pt_tensor *const *ts, int n, int root) {
  return run_status("dist_broadcast", [&] {
#ifdef PITH_HAVE_GLOO
    if (!d) throw std::invalid_argument("no process group");
    c10::NoGradGuard no_grad;
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    for (int i = 0; i < n; i++) {
      if (!ts[i]) throw std::invalid_argument("tensor " + std::to_string(i) + " is NULL");
      at::Tensor &t = ts[i]->t;
      std::vector<at::Tensor> v{t.is_contiguous() ? t : t.contiguous()};
      dist_wait(d, d->pg->broadcast(v, bo), "broadcast");
      if (!v[0].is_same(t)) t.copy_(v[0]);
    }
#else
    (void)d, (void)ts, (void)n, (void)root;
    throw std::runtime_error("not built with a distributed backend");
#endif
  });
}

extern "C" int pt_dist_all_reduce_grads(pt_dist *d, pt_tensor *const *params, int n, double scale,
                                        size_t bucket_bytes) {
  return run_status("dist_all_reduce_grads", [&] {
#ifdef PITH_HAVE_GLOO
    if (!d) throw std::invalid_argument("no process group");
    c10::NoGradGuard no_grad;
    std::vector<at::Tensor> grads;
    for (int i = 0; i < n; i++) {
      if (!params[i]) throw std::invalid_argument("param " + std::to_string(i) + " is NULL");
      if (params[i]->t.grad().defined()) grads.push_back(params[i]->t.mutable_grad());
    }
    size_t cap = std::max<size_t>(bucket_bytes / sizeof(float), 1);
    for (size_t first = 0; first < grads.size();) {
      size_t last = first, elems = 0;  // [first, last): one bucket (a tensor larger than a bucket goes alone)
      while (last < grads.size() && (last == first || elems + (size_t)grads[last].numel() <= cap))
        elems += (size_t)grads[last++].numel();
      std::vector<at::Tensor> flat;
      for (size_t i = first; i < last; i++) flat.push_back(grads[i].to(at::kFloat).reshape(-1));
      std::vector<at::Tensor> bucket{at::cat(flat)};
      dist_wait(d, d->pg->allreduce(bucket), "all_reduce");
      if (scale != 1) bucket[0].mul_(scale);
      int64_t off = 0;
      for (size_t i = first; i < last; i++) {
        int64_t k = grads[i].numel();
        grads[i].copy_(bucket[0].narrow(0, off, k).view(grads[i].sizes()));
        off += k;
      }
      first = last;
    }
#else
    (void)d, (void)params, (void)n, (void)scale, (void)bucket_bytes;
    throw std::runtime_error("not built with a distributed backend");
#endif
  });
}

extern "C" int pt_dist_all_reduce_host(pt_dist *d, double *v, int n, int max) {
  return run_status("dist_all_reduce", [&] {
#ifdef PITH_HAVE_GLOO
    if (!d) throw std::invalid_argument("no process group");
    c10::NoGradGuard no_grad;
    at::Tensor t = at::from_blob(v, {n}, at::kDouble).clone().to(d->dev);
    std::vector<at::Tensor> ts{t};
    c10d::AllreduceOptions o;
    o.reduceOp = max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    dist_wait(d, d->pg->allreduce(ts, o), "all_reduce");
    at::Tensor back = ts[0].to(at::kCPU).contiguous();
    memcpy(v, back.data_ptr<double>(), sizeof(double) * (size_t)n);
#else
    (void)d, (void)v, (void)n, (void)max;
    throw std::runtime_error("not built with a distributed backend");
#endif
  });
}

extern "C" int pt_dist_barrier(pt_dist *d) {
  return run_status("dist_barrier", [&] {
#ifdef PITH_HAVE_GLOO
    if (!d) throw std::invalid_argument("no process group");
    dist_wait(d, d->pg->barrier(), "barrier");
#else
    (void)d;
    throw std::runtime_error("not built with a distributed backend");
#endif
  });
}

// ---- gradients reduced while the backward pass runs (overlap)
#ifdef PITH_HAVE_GLOO
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

// Buckets are made in reverse parameter order (the backward pass reaches the last layers first) and
// launched strictly in bucket order, so every rank issues the same collectives in the same order
// even if its hooks fire in another one.
struct pt_dist_grads_state {
  pt_dist *d;
  std::vector<at::Tensor> params;             // the leaf tensors (handles sharing their storage)
  std::vector<int> bucket_of;                 // param -> its bucket
  std::vector<int64_t> offset;                // param -> its first element in the bucket
  std::vector<std::vector<int>> members;      // bucket -> its params
  std::vector<at::Tensor> flat;               // bucket -> f32 buffer (elements of its params)
  std::vector<int> left;                      // bucket -> params whose gradient has not come yet
  std::vector<char> ready;                    // param -> its gradient is in the buffer
  std::vector<c10::intrusive_ptr<c10d::Work>> works;  // bucket -> its all-reduce, once launched
  int next = 0;                               // the first bucket not launched yet
  bool armed = false;
  std::mutex mu;

  void put(int i) {  // param i's gradient into its bucket's buffer (zeros when it has none)
    at::Tensor dst = flat[bucket_of[i]].narrow(0, offset[i], params[i].numel());
    const at::Tensor &g = params[i].grad();
    if (g.defined()) dst.copy_(g.reshape(-1));
    else dst.zero_();
    ready[i] = 1;
  }
  void launch_ready() {  // in bucket order, every bucket whose gradients are all in
    while (next < (int)flat.size() && left[next] == 0) {
      std::vector<at::Tensor> v{flat[next]};
      works[next] = d->pg->allreduce(v);
      next++;
    }
  }
};

struct pt_dist_grads {
  std::shared_ptr<pt_dist_grads_state> s;
};

namespace {
struct GradReadyHook : torch::autograd::PostAccumulateGradHook {
  std::weak_ptr<pt_dist_grads_state> s;  // the hook outlives pt_dist_grads_free as a no-op
  int index;
  GradReadyHook(std::weak_ptr<pt_dist_grads_state> s, int index) : s(std::move(s)), index(index) {}
  void operator()(const torch::autograd::Variable &) override {
    auto st = s.lock();
    if (!st) return;
    std::lock_guard<std::mutex> lock(st->mu);
    if (!st->armed || st->ready[index]) return;
    c10::NoGradGuard no_grad;
    st->put(index);
    st->left[st->bucket_of[index]]--;
    st->launch_ready();
  }
};
}  // namespace
#endif

extern "C" pt_dist_grads *pt_dist_grads_new(pt_dist *d, pt_tensor *const *params, int n, size_t bucket_bytes) {
  pt_dist_grads *out = nullptr;
  run_status("dist_grads_new", [&] {
#ifdef PITH_HAVE_GLOO
    if (!d) throw std::invalid_argument("no process group");
    if (n < 1) throw std::invalid_argument("no parameters");
    auto s = std::make_shared<pt_dist_grads_state>();
    s->d = d;
    for (int i = 0; i < n; i++) {
      if (!params[i]) throw std::invalid_argument("param " + std::to_string(i) + " is NULL");
      const at::Tensor &t = params[i]->t;
      if (!t.is_leaf() || !t.requires_grad())
        throw std::invalid_argument("param " + std::to_string(i) + " is not a leaf that requires grad");
      if (torch::autograd::impl::post_acc_grad_hooks(t))
        throw std::invalid_argument("param " + std::to_string(i) + " already has a post-accumulate-grad hook");
      s->params.push_back(t);
    }
    s->bucket_of.assign(n, -1);
    s->offset.assign(n, 0);
    s->ready.assign(n, 0);
    size_t cap = std::max<size_t>(bucket_bytes / sizeof(float), 1), elems = 0;
    for (int i = n - 1; i >= 0; i--) {  // a tensor larger than a bucket goes alone
      size_t k = (size_t)s->params[i].numel();
      if (s->members.empty() || (elems > 0 && elems + k > cap)) s->members.emplace_back(), elems = 0;
      s->bucket_of[i] = (int)s->members.size() - 1;
      s->offset[i] = (int64_t)elems;
      s->members.back().push_back(i);
      elems += k;
    }
    for (auto &m : s->members) {
      int64_t total = 0;
      for (int i : m) total += s->params[i].numel();
      s->flat.push_back(at::empty({total}, at::TensorOptions().dtype(at::kFloat).device(d->dev)));
      s->left.push_back((int)m.size());
    }
    s->works.resize(s->flat.size());
    for (int i = 0; i < n; i++)
      torch::autograd::impl::set_post_acc_grad_hooks(s->params[i], std::make_unique<GradReadyHook>(s, i));
    out = new pt_dist_grads{s};
#else
    (void)d, (void)params, (void)n, (void)bucket_bytes;
    throw std::runtime_error("not built with a distributed backend");
#endif
  });
  return out;
}

extern "C" int pt_dist_grads_arm(pt_dist_grads *g) {
  return run_status("dist_grads_arm", [&] {
#ifdef PITH_HAVE_GLOO
    if (!g) throw std::invalid_argument("no gradient hooks");
    std::lock_guard<std::mutex> lock(g->s->mu);
    if (g->s->next > 0) throw std::logic_error("armed again before dist_grads_finish");
    g->s->armed = true;
#else
    (void)g;
    throw std::runtime_error("not built with a distributed backend");
#endif
  });
}

extern "C" int pt_dist_grads_finish(pt_dist_grads *g, double scale) {
  return run_status("dist_grads_finish", [&] {
#ifdef PITH_HAVE_GLOO
    if (!g) throw std::invalid_argument("no gradient hooks");
    pt_dist_grads_state &s = *g->s;
    std::lock_guard<std::mutex> lock(s.mu);
    c10::NoGradGuard no_grad;
    struct Reset {  // the next step starts from nothing, whatever happens here
      pt_dist_grads_state &s;
      ~Reset() {
        s.armed = false;
        s.next = 0;
        std::fill(s.ready.begin(), s.ready.end(), 0);
        for (size_t b = 0; b < s.members.size(); b++) s.left[b] = (int)s.members[b].size(), s.works[b].reset();
      }
    } reset{s};
    // What the hooks did not send: parameters the backward pass did not reach (or hooks not armed).
    for (size_t i = 0; i < s.params.size(); i++)
      if (!s.ready[i]) s.put((int)i), s.left[s.bucket_of[i]]--;
    s.launch_ready();
    for (size_t b = 0; b < s.flat.size(); b++) {
      dist_wait(s.d, s.works[b], "all_reduce");
      if (scale != 1) s.flat[b].mul_(scale);
      for (int i : s.members[b]) {
        at::Tensor &p = s.params[i];
        if (!p.grad().defined()) continue;  // none here, as before the all-reduce
        p.mutable_grad().copy_(s.flat[b].narrow(0, s.offset[i], p.numel()).view(p.sizes()));
      }
    }
#else
    (void)g, (void)scale;
    throw std::runtime_error("not built with a distributed backend");
#endif
  });
}

extern "C" int pt_dist_grads_launched(pt_dist_grads *g) {
#ifdef PITH_HAVE_GLOO
  if (!g) return -1;
  std::lock_guard<std::mutex> lock(g->s->mu);
  return g->s->next;
#else
  (void)g;
  return -1;
#endif
}

extern "C" void pt_dist_grads_free(pt_dist_grads *g) {
#ifdef PITH_HAVE_GLOO
  if (!g) return;
  try {
    for (auto &p : g->s->params) {  // our hooks only; leave the slot alone if another took it
      auto &h = torch::autograd::impl::post_acc_grad_hooks(p);
      if (h && dynamic_cast<GradReadyHook *>(h.get())) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
    }
  } catch (...) {
  }
  delete g;
#else
  (void)g;
#endif
}
