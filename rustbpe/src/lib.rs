use pyo3::prelude::*;

#[pyfunction]
fn hello() -> u32 { 42 }

#[pymodule]
fn _rustbpe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hello, m)?)?;
    Ok(())
}
