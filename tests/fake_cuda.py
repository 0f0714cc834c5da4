"""Just enough of pycuda.driver to run the GPU runtime's host side with numpy 'device' buffers
of one dtype (that of the compiled code), the kernels being played by CPU functions."""

import numpy as np


class FakeDriver:
    def __init__(self, dtype=np.float64):
        self.dtype = np.dtype(dtype)

    class Event:
        def record(self):
            pass

        def synchronize(self):
            pass

        def time_till(self, other):
            return 0.0

    def to_device(self, a):
        assert a.dtype == self.dtype, a.dtype  # the host side converts before copying
        return np.array(a).ravel()

    def mem_alloc(self, nbytes):
        return np.full(nbytes // self.dtype.itemsize, np.nan, self.dtype)

    @staticmethod
    def from_device(d, shape, dtype):
        return d.reshape(shape).astype(dtype)
