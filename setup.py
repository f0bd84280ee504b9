from setuptools import setup, find_packages

setup(
    name='registry-refcount',
    version='0.1.0',
    description='Reference counting and garbage collection for docker-registry 0.9.1',
    long_description=open('README.rst').read(),
    # the package alone: the benchmarks and the tests run from a checkout
    packages=find_packages(exclude=['tests', 'tests.*', 'bench', 'bench.*']),
    install_requires=['docker-registry-core>=2.0.3', 'PyYAML'],
    # tqdm (the CLI's progress bars) is an extra, never a requirement: the
    # registry loads its extensions through the pkg_resources of the
    # setuptools it pins (5.8), which resolves an extension's requirements
    # and cannot read the markers in tqdm's metadata - the registry would
    # not start.  ``pip install 'registry_refcount-*.whl[progress]'``.
    extras_require={'test': ['pytest', 'hypothesis', 'requests'],
                    'progress': ['tqdm']},
    entry_points={
        'docker_registry.extensions': [
            'refcount = registry_refcount.ext',
        ],
        'console_scripts': [
            'registry-refcount = registry_refcount.cli:main',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 2.7',
        'Programming Language :: Python :: 3',
    ],
)
